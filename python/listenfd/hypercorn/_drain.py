"""Hypercorn's HTTP/1 connections drain when the server stops (the policy of
`listenfd._drain`): its patch points.

Once Hypercorn's `context.terminated` is set, its idle-timeout task closes a
connection with no request under way at once, and a connection closes after
the response under way, which did not say so. Ours: every response from then
on says `Connection: close`; a response that went out before the stop
without it leaves the connection open for the next request (answered with
close); the idle task waits `GRACE` (again while part of a request has
arrived) before closing. A request that arrives meanwhile stops the idle
task, as it always does.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from typing import Any

from listenfd._drain import CLOSE, GRACE, PENDING_LOOKS, unread


def _partial_request(tcp_server: Any) -> bool:
    """Bytes of a request not handled yet: in the kernel, in the stream
    reader's buffer, or in h11's (HTTP/2: only the first two)."""
    writer = getattr(tcp_server, "writer", None)  # asyncio; trio has a stream
    sock = writer.get_extra_info("socket") if writer is not None else None
    if unread(sock or getattr(getattr(tcp_server, "stream", None), "socket", None)):
        return True
    if getattr(getattr(tcp_server, "reader", None), "_buffer", None):
        return True
    connection = getattr(getattr(tcp_server.protocol, "protocol", None), "connection", None)
    trailing = getattr(connection, "trailing_data", None)
    return bool(trailing and trailing[0])


def _waits(tcp_server: Any) -> bool:
    """Does the connection wait for a request at the stop? Unless it was
    quiet for GRACE already (bytes are stamped by `_handle`)."""
    protocol = getattr(tcp_server.protocol, "protocol", None)
    seen = getattr(protocol, "listenfd_seen", None)
    quiet = seen is not None and time.monotonic() - seen >= GRACE
    return not quiet or _partial_request(tcp_server)


def _handle(original: Any) -> Any:
    from hypercorn.events import RawData

    async def handle(self: Any, event: Any) -> None:
        if isinstance(event, RawData):
            self.listenfd_seen = time.monotonic()
        await original(self, event)

    return handle


def _asyncio_idle_timeout(_: Any) -> Any:
    import asyncio

    async def _idle_timeout(self: Any) -> None:
        # Not asyncio.wait_for: on Python < 3.12 it can swallow the task's
        # cancellation when the event fires at the same moment (a request
        # arrived and stops this task), and the drain would then close the
        # connection under that request.
        terminated = asyncio.ensure_future(self.context.terminated.wait())
        try:
            await asyncio.wait({terminated}, timeout=self.config.keep_alive_timeout)
        finally:
            terminated.cancel()
        # Else idle for keep_alive_timeout: closed at once, as Hypercorn does.
        stopping = terminated.done() and not terminated.cancelled()
        if stopping and _waits(self):
            await asyncio.sleep(GRACE)
            for _ in range(PENDING_LOOKS):
                if not _partial_request(self):
                    break
                await asyncio.sleep(GRACE)
        await asyncio.shield(self._initiate_server_close())

    return _idle_timeout


def _trio_idle_timeout(_: Any) -> Any:
    import trio  # type: ignore[import-not-found,unused-ignore]

    async def _idle_timeout(self: Any) -> None:
        with trio.move_on_after(self.config.keep_alive_timeout) as waited:
            await self.context.terminated.wait()
        if not waited.cancelled_caught and _waits(self):  # the server stops
            await trio.sleep(GRACE)
            for _ in range(PENDING_LOOKS):
                if not _partial_request(self):
                    break
                await trio.sleep(GRACE)
        with trio.CancelScope(shield=True):
            await self._initiate_server_close()

    return _idle_timeout


def _stream_send(original: Any) -> Any:
    from hypercorn.protocol.events import Response

    async def stream_send(self: Any, event: Any) -> None:
        if (
            isinstance(event, Response)
            and event.status_code >= 200
            and self.context.terminated.is_set()
            and CLOSE not in event.headers
        ):
            event = dataclasses.replace(event, headers=[*event.headers, CLOSE])
        await original(self, event)

    return stream_send


class _NotTerminated:
    """A connection's view of Hypercorn's context for one call: the stop is
    not seen (the rest is the real context)."""

    class _Unset:
        @staticmethod
        def is_set() -> bool:
            return False

    terminated = _Unset()

    def __init__(self, context: Any) -> None:
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _maybe_recycle(original: Any) -> Any:
    import h11

    async def maybe_recycle(self: Any) -> None:
        connection = self.connection
        context = self.context
        keep = (
            context.terminated.is_set()
            and connection.our_state is h11.DONE  # the response did not say close
            and connection.their_state is h11.DONE
        )
        if not keep:
            await original(self)
            return
        # The client may be sending its next request on it already: ready
        # the connection for it (Hypercorn's own recycling); the drain's
        # idle task closes it if none comes.
        self.context = _NotTerminated(context)
        try:
            await original(self)
        finally:
            self.context = context

    return maybe_recycle


# (module, class, method) -> the wrapper of the original method.
PATCHES = {
    ("hypercorn.protocol.h11", "H11Protocol", "stream_send"): _stream_send,
    ("hypercorn.protocol.h11", "H11Protocol", "_maybe_recycle"): _maybe_recycle,
    ("hypercorn.protocol.h11", "H11Protocol", "handle"): _handle,
    ("hypercorn.asyncio.tcp_server", "TCPServer", "_idle_timeout"): _asyncio_idle_timeout,
    ("hypercorn.trio.tcp_server", "TCPServer", "_idle_timeout"): _trio_idle_timeout,
}


def patch_connections() -> None:
    """Once per process, before the server serves (trio's only where trio is)."""
    for (module_name, class_name, method), wrap in PATCHES.items():
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except ImportError:  # trio is optional
            continue
        marker = f"listenfd_drains_{method}"
        if vars(cls).get(marker):
            continue
        setattr(cls, method, wrap(getattr(cls, method)))
        setattr(cls, marker, True)
