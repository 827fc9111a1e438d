"""A server stand-in: claims its sockets and prints a JSON report.

python child_report.py [--keep-env] [--allow-missing-pid] [--accept]
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys

import listenfd

VARS = ("LISTEN_PID", "LISTEN_PIDFDID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_FDS_FIRST_FD")


def open_fds() -> list[int]:
    return sorted(int(n) for n in os.listdir("/proc/self/fd"))


def c_environ() -> dict[str, str]:
    # ctypes only now, after the claim: importing it leaves libffi's own file
    # open on some builds (libffi's static trampolines, Debian's CPython
    # 3.14/3.15), which would take a closed fd 3 before the claim looks at it.
    import ctypes

    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_char_p
    return {v: (libc.getenv(v.encode()) or b"").decode() for v in VARS if libc.getenv(v.encode())}


def main() -> None:
    args = sys.argv[1:]
    report: dict[str, object] = {"pid": os.getpid(), "fds_before": open_fds()}
    try:
        sockets = listenfd.from_systemd(
            unset_env="--keep-env" not in args, allow_missing_pid="--allow-missing-pid" in args
        )
    except listenfd.ActivationError as exc:
        report["error"] = str(exc)
        report["error_type"] = type(exc).__name__
    else:
        report["env_after_claim"] = {v: os.environ[v] for v in VARS if v in os.environ}
        report["sockets"] = [
            {
                "fd": s.fd,
                "name": s.name,
                "family": int(s.family),
                "family_name": s.family.name,
                "type": int(s.type),
                "listening": s.listening,
                "backlog": s.backlog,
                "address": s.address if not isinstance(s.address, bytes) else repr(s.address),
                "cloexec": bool(fcntl.fcntl(s.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC),
                "repr": repr(s),
            }
            for s in sockets
        ]
        try:
            report["second_call"] = len(listenfd.from_systemd())
        except listenfd.ActivationError as exc:
            report["second_call_error"] = str(exc)
        if "--accept" in args:
            served = []
            for s in sockets:
                if s.listening and s.type == socket.SOCK_STREAM:
                    listener = s.to_socket()
                    conn, _ = listener.accept()
                    conn.sendall(f"hello from fd {s.fd}\n".encode())
                    conn.close()
                    served.append(s.fd)
            report["served"] = served
    report["notify_socket"] = os.environ.get("NOTIFY_SOCKET")
    report["os_environ"] = {v: os.environ[v] for v in VARS if v in os.environ}
    report["fds_after"] = open_fds()
    report["c_environ"] = c_environ()
    print(json.dumps(report), flush=True)


main()
