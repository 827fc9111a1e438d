"""uvicorn's HTTP/1 connections drain when the server stops (`listenfd._drain`):
the patch points on its two protocols, h11's and httptools'.

uvicorn's `shutdown()` of a protocol closes it at once when no response is
under way; ours starts a drain instead, and closes it only when the drain
says so. `data_received` tells the drain about each request that arrives.
Patched on the classes, not on instances: uvloop looks `data_received` up
once per connection.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

from listenfd._drain import CLOSE, Drain, unread

# The protocol classes, by module; httptools' only where httptools is installed.
PROTOCOLS = {
    "uvicorn.protocols.http.h11_impl": "H11Protocol",
    "uvicorn.protocols.http.httptools_impl": "HttpToolsProtocol",
}


def protocol_classes() -> list[Any]:
    found = []
    for module, name in PROTOCOLS.items():
        try:
            found.append(getattr(importlib.import_module(module), name))
        except ImportError:  # httptools is an optional dependency of uvicorn
            continue
    return found


class _Connection:
    def __init__(self, protocol: Any, close: Callable[[Any], None]) -> None:
        self._protocol = protocol
        self._close = close

    def closing(self) -> bool:
        return bool(self._protocol.transport.is_closing())

    def under_way(self) -> bool:
        cycle = self._protocol.cycle
        return cycle is not None and not cycle.response_complete

    def pending(self) -> bool:
        conn = getattr(self._protocol, "conn", None)  # h11: bytes of a request not parsed yet
        if conn is not None and conn.trailing_data[0]:
            return True
        return unread(self._protocol.transport.get_extra_info("socket"))

    def answer_with_close(self) -> None:
        protocol = self._protocol
        pipelined = [cycle for cycle, _ in getattr(protocol, "pipeline", ())]
        for cycle in [protocol.cycle, *pipelined]:
            if cycle is None or cycle.response_started or CLOSE in cycle.default_headers:
                continue
            cycle.default_headers = [*cycle.default_headers, CLOSE]

    def close_idle(self) -> None:
        self._close(self._protocol)  # uvicorn's own shutdown(): closes an idle one


# Set on uvicorn's ServerState when the server starts to stop.
STOPPING = "listenfd_stopping"


def stopping(server_state: Any) -> None:
    """From now on a connection of this server drains from its start."""
    setattr(server_state, STOPPING, True)


def patch_protocols() -> None:
    """Once per process, before the server serves."""
    for cls in protocol_classes():
        if vars(cls).get("listenfd_drains"):
            continue
        close = cls.shutdown
        received = cls.data_received
        made = cls.connection_made

        def shutdown(self: Any, close: Callable[[Any], None] = close) -> None:
            if self.transport.is_closing() or "listenfd_drain" in self.__dict__:
                return
            drain = Drain(_Connection(self, close), self.loop)
            self.listenfd_drain = drain
            # Never received anything: it counts from now (a request may be on its way).
            quiet_for = time.monotonic() - self.__dict__.get("listenfd_seen", time.monotonic())
            drain.start(quiet_for)

        def data_received(self: Any, data: bytes, received: Any = received) -> None:
            self.listenfd_seen = time.monotonic()
            received(self, data)
            drain = self.__dict__.get("listenfd_drain")
            if drain is not None:
                drain.received()

        def connection_made(self: Any, transport: Any, made: Any = made) -> None:
            made(self, transport)
            if getattr(self.server_state, STOPPING, False):
                # Accepted before the stop, made after uvicorn told each
                # connection to shut down: it drains too (else a client that
                # keeps it alive is served for ever and the worker never exits).
                self.shutdown()

        cls.shutdown = shutdown
        cls.data_received = data_received
        cls.connection_made = connection_made
        cls.listenfd_drains = True
