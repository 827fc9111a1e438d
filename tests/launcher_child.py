"""A server for the launcher tests: claims its sockets with listenfd, writes a
report, answers HTTP on its stream sockets ("pid P inode I") and echoes UDP.

    python launcher_child.py REPORT_DIR [--notify] [--ping] [--exit-on-term CODE]
        [--ignore-term] [--helper] [--daemon] [--junk] [--ready-file PATH]

--notify: READY=1 (and STATUS=) on NOTIFY_SOCKET once serving.
--ping: WATCHDOG=1 every 0.2 s, while REPORT_DIR/hang does not exist.
--ignore-term: SIGTERM does nothing (only SIGKILL stops it).
--helper: fork a helper that holds the sockets and sleeps (in this process group).
--daemon: fork a helper that leaves the process group (setsid) and is orphaned.
  Helpers write their pids to REPORT_DIR/helper-PID.
--junk: first send binary, '='-less and oversized datagrams (no READY=1 unless --notify).
While REPORT_DIR/flood exists: 20,000 STATUS= datagrams before READY=1.
--ready-file PATH: READY=1 only once PATH exists.

Exits with status 3 at start while REPORT_DIR/fail exists (a broken new version).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import listenfd

report_dir = Path(sys.argv[1])
args = sys.argv[2:]
if (report_dir / "fail").exists():
    print("launcher_child: failing on purpose", file=sys.stderr)
    sys.exit(3)

if "--exit-on-term" in args:
    code = int(args[args.index("--exit-on-term") + 1])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(code))
if "--ignore-term" in args:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def fork_helper(leave_group: bool) -> None:
    """A helper holding the sockets (fds 3..), as a server's worker would."""
    pid = os.fork()
    if pid == 0:
        if leave_group:
            os.setsid()
            if os.fork():  # the daemon's parent exits: the daemon is orphaned
                os._exit(0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        (report_dir / f"helper-{os.getpid()}").write_text(str(os.getppid()))
        time.sleep(600)
        os._exit(0)
    if leave_group:
        os.waitpid(pid, 0)


def notify_raw(payload: bytes) -> None:
    address = os.environ["NOTIFY_SOCKET"]
    target = "\0" + address[1:] if address.startswith("@") else address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as n:
        n.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        with contextlib.suppress(OSError):
            n.sendto(payload, target)


env = {
    k: v
    for k, v in os.environ.items()
    if k.startswith(("LISTEN_", "NOTIFY_SOCKET", "WATCHDOG_", "APP_"))
}
fds = {}
for name in os.listdir("/proc/self/fd"):
    # The directory fd listdir used is closed by now: readlink fails for it.
    with contextlib.suppress(OSError):
        fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
sockets = listenfd.from_systemd()
inode = os.fstat(sockets[0].fileno()).st_ino if sockets else None
report = {
    "pid": os.getpid(),
    "env": env,
    "dont_write_bytecode": sys.flags.dont_write_bytecode,
    "fds": fds,
    "sockets": [
        {
            "fd": s.fd,
            "name": s.name,
            "family": s.family.name,
            "type": s.type.name,
            "listening": s.listening,
            "address": s.address,
            "defer_accept": s.defer_accept,
            "inode": os.fstat(s.fileno()).st_ino,
        }
        for s in sockets
    ],
}
(report_dir / f"report-{os.getpid()}.json").write_text(json.dumps(report))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"pid {os.getpid()} inode {inode}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve(sock: socket.socket) -> None:
    server = ThreadingHTTPServer(("localhost", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.serve_forever()


def echo(sock: socket.socket) -> None:
    while True:
        data, peer = sock.recvfrom(2048)
        sock.sendto(data.upper(), peer)


threads = []
for s in sockets:
    target = serve if s.type == socket.SOCK_STREAM else echo
    threads.append(threading.Thread(target=target, args=(s.to_socket(),), daemon=True))
for t in threads:
    t.start()

if "--helper" in args:
    fork_helper(leave_group=False)
if "--daemon" in args:
    fork_helper(leave_group=True)
if "--junk" in args and "NOTIFY_SOCKET" in os.environ:
    # The last is over 64 KiB, read only cut short: its READY=1 must not count.
    for junk in (b"\xff\xfe\x00binary", b"no equals sign", b"READY=1\n" + b"x" * 100_000):
        notify_raw(junk)
if (report_dir / "flood").exists() and "NOTIFY_SOCKET" in os.environ:
    for i in range(20_000):
        notify_raw(f"STATUS=flood {i}".encode())
if "--ready-file" in args:
    ready_file = Path(args[args.index("--ready-file") + 1])
    while not ready_file.exists():
        time.sleep(0.02)

if "--notify" in args and "NOTIFY_SOCKET" in os.environ:
    address = os.environ["NOTIFY_SOCKET"]
    target_addr = "\0" + address[1:] if address.startswith("@") else address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as n:
        n.sendto(f"READY=1\nSTATUS=serving as pid {os.getpid()}".encode(), target_addr)
        while "--ping" in args and not (report_dir / "hang").exists():
            n.sendto(b"WATCHDOG=1", target_addr)
            time.sleep(0.2)

signal.pause()
