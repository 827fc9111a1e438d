"""``python -m listenfd.uvicorn``: uvicorn's CLI with the listenfd options."""

from listenfd.uvicorn._cli import main

main()
