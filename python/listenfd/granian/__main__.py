"""``python -m listenfd.granian``: Granian's CLI with the listenfd options."""

import sys

from listenfd.granian._cli import main

main()
sys.exit(0)
