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

The per-server packages say how to tell these states on their connections
(`Connection`); the policy is here, once.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import termios
from typing import Any, Protocol

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


class Connection(Protocol):
    """One server connection, as the drain sees it."""

    def closing(self) -> bool:
        """Closed, or closing."""

    def under_way(self) -> bool:
        """A request is under way: received, its response not complete."""

    def pending(self) -> bool:
        """Bytes of a request have arrived and are not parsed yet."""

    def answer_with_close(self) -> None:
        """Every response not started yet will say `Connection: close`."""

    def close_idle(self) -> None:
        """Close it now (nothing is under way)."""


class Drain:
    """The drain of one connection, on its event loop."""

    def __init__(
        self,
        connection: Connection,
        loop: asyncio.AbstractEventLoop,
        grace: float = GRACE,
    ) -> None:
        self._connection = connection
        self._loop = loop
        self._grace = grace
        self._received = False
        self._pending_looks = 0

    def start(self, quiet_for: float) -> None:
        """The server stops, the connection received nothing for `quiet_for`
        seconds: from now on every response closes."""
        connection = self._connection
        connection.answer_with_close()
        if quiet_for >= self._grace and not (connection.under_way() or connection.pending()):
            connection.close_idle()
            return
        self._loop.call_later(self._grace, self._look)

    def received(self) -> None:
        """Bytes arrived (the connection has parsed them): a request that
        starts now is answered with `Connection: close`."""
        self._received = True
        self._connection.answer_with_close()

    def _look(self) -> None:
        connection = self._connection
        if connection.closing():
            return
        if connection.under_way():
            self._pending_looks = 0  # the server's own graceful timeout bounds it
        elif self._received or connection.pending():
            self._pending_looks += 1
            if self._pending_looks > PENDING_LOOKS:
                connection.close_idle()
                return
        else:
            connection.close_idle()
            return
        self._received = False
        self._loop.call_later(self._grace, self._look)
