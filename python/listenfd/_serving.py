"""What the server hooks (``listenfd.granian``, ...) share."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


def start_helper_thread(target: Callable[[], object], name: str) -> threading.Thread:
    """Start a daemon thread that blocks every signal, so that the kernel
    never hands it a signal meant for the server (SIGTERM, SIGHUP): those go
    to threads that act on them."""

    def run() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        target()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
