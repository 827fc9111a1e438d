"""``listenfd reload PID`` for a Granian started with ``--systemd-socket``:
Granian's main process answers on its control socket (the protocol of
``listenfd._listenfd.reload``). A request does what SIGHUP does, and the
answer comes when the new workers serve and the old ones have stopped."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import struct
from typing import Any

from listenfd._listenfd import control_socket_name
from listenfd._serving import start_helper_thread
from listenfd.granian._readiness import Readiness

_UCRED = struct.Struct("iII")


def serve(server: Any, readiness: Readiness, log: Any) -> None:
    """Listen on this process's control socket, if nobody holds it."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(b"\0" + control_socket_name(os.getpid()).encode())
        listener.listen(16)
    except OSError as exc:
        listener.close()
        log.warning(f"listenfd reload cannot reach this process: its control socket: {exc}")
        return
    readiness.not_for_workers = (listener.fileno(), os.fstat(listener.fileno()).st_ino)

    def accept_loop() -> None:
        while True:
            conn, _ = listener.accept()
            start_helper_thread(functools.partial(_answer, conn, server, readiness), "reload")

    start_helper_thread(accept_loop, "listenfd-control")


def _answer(conn: socket.socket, server: Any, readiness: Readiness) -> None:
    with conn, contextlib.suppress(OSError):
        _, uid, _ = _UCRED.unpack(
            conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        )
        # The request first, a refusal included: a client still writing to a
        # closed connection would see only EPIPE.
        conn.settimeout(10)
        request = conn.makefile("rb").readline().decode(errors="replace").strip()
        own = os.geteuid()
        if uid not in (own, 0):
            why = f"permission denied: uid {uid} may not reload a Granian of uid {own}"
            conn.sendall(f"FAILED {why}\n".encode())
            return
        if request != "RELOAD":
            conn.sendall(f"FAILED unknown request {request!r}\n".encode())
            return
        with readiness.lock:
            before = readiness.generation
        # What SIGHUP does (Granian's own handler): respawn the workers.
        server.signal_handler_reload()
        readiness.wait_ready_after(before)
        conn.settimeout(None)
        conn.sendall(
            f"OK Granian pid {os.getpid()}: {server.workers} new worker(s) serve; the old "
            f"ones have stopped\n".encode()
        )
