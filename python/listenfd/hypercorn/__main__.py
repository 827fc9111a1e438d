"""``python -m listenfd.hypercorn``: hypercorn's CLI with the listenfd options."""

from listenfd.hypercorn._cli import main

main()
