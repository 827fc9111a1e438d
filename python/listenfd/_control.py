"""``listenfd reload PID`` for a server started with ``--systemd-socket``:
its main process answers on its control socket (the protocol of
``listenfd._listenfd.reload``). A request does what SIGHUP does, and the
answer comes when the new workers serve and the old ones have stopped, or
says why the reload failed (the old workers then keep serving)."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import struct
from collections.abc import Callable

from listenfd._coordinator import ReloadFailed
from listenfd._listenfd import (
    CONTROL_REQUEST_TIMEOUT_SECS,
    control_refusal,
    control_reply,
    control_socket_name,
)
from listenfd._serving import Logger, start_helper_thread

__all__ = ["ReloadFailed", "serve"]

_UCRED = struct.Struct("iII")


def serve(server: str, reload: Callable[[], str], log: Logger) -> tuple[int, int] | None:
    """Listen on this process's control socket, if nobody holds it; each
    request runs `reload` (which blocks until the new version serves and
    returns what to tell, or raises `ReloadFailed`); `server` names it in
    refusals ("Granian"). Returns the listener's
    (fd, inode), which forked workers must close, or None."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(b"\0" + control_socket_name(os.getpid()).encode())
        listener.listen(16)
    except OSError as exc:
        listener.close()
        log.warning(f"listenfd reload cannot reach this process: its control socket: {exc}")
        return None

    def accept_loop() -> None:
        while True:
            conn, _ = listener.accept()
            start_helper_thread(functools.partial(_answer, conn, server, reload), "listenfd-reload")

    start_helper_thread(accept_loop, "listenfd-control")
    return listener.fileno(), os.fstat(listener.fileno()).st_ino


def _answer(conn: socket.socket, server: str, reload: Callable[[], str]) -> None:
    with conn, contextlib.suppress(OSError):
        _, uid, _ = _UCRED.unpack(
            conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        )
        # The request first, a refusal included: a client still writing to a
        # closed connection would see only EPIPE.
        conn.settimeout(CONTROL_REQUEST_TIMEOUT_SECS)
        request = conn.makefile("rb").readline().decode(errors="replace")
        refusal = control_refusal(request, uid, os.geteuid(), server)
        if refusal is not None:
            conn.sendall(refusal.encode())
            return
        conn.settimeout(None)
        try:
            answer = control_reply(True, reload())
        except ReloadFailed as exc:
            answer = control_reply(False, str(exc))
        conn.sendall(answer.encode())
