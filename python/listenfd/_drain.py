"""How a stopping server ends its kept-alive connections without failing a
request of a client that never retries.

A server told to stop closes the connections with no request under way. On
such a connection the client may have sent its next request already (in the
kernel's receive buffer, or on the wire): it reads EOF or a reset, and a
client that does not retry (`wrk`, a `POST`, many service clients) fails.
Instead, each connection drains:

- a request under way, or one that arrives, is answered with
  `Connection: close`, and the connection closes after that response;
- a connection that was quiet for `GRACE` seconds already when the server
  stopped is closed at once (an idle connection of a client's pool);
- any other is closed once nothing arrived on it for `GRACE` seconds (each
  byte received starts the wait again; bytes still in the kernel's receive
  queue count), and at the latest after `PENDING_LOOKS` such waits without a
  whole request: no request was on its way, or one never completes;
- the server's own graceful timeout bounds the whole stop, as before.

The figures are here, once; Hypercorn's patch points apply them
(listenfd/hypercorn/_drain.py). uvicorn keeps its own shutdown for now:
with the same drain, about one run in four of its real-systemd tests saw a
stopping worker that did not exit (a restart stalled until systemd's stop
timeout), cause not found yet.
"""

from __future__ import annotations

import array
import fcntl
import termios
from typing import Any

from listenfd._listenfd import DRAIN_IDLE_GRACE_MS

GRACE = DRAIN_IDLE_GRACE_MS / 1000
# Waits of GRACE for bytes that never become a whole request (a client that
# trickles, bytes the server does not read): then the connection closes.
PENDING_LOOKS = 3
CLOSE = (b"connection", b"close")


def unread(sock: Any) -> bool:
    """Bytes in the kernel's receive queue of `sock` (a socket, or None):
    under load a stopping server may not have read a request that came in
    long ago (its process waited for a CPU)."""
    if sock is None:
        return False
    count = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
    except (OSError, ValueError):  # closed meanwhile
        return False
    return count[0] > 0
