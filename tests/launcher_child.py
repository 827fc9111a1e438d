"""A server for the launcher tests: claims its sockets with listenfd, writes a
report, answers HTTP on its stream sockets ("pid P inode I") and echoes UDP.

    python launcher_child.py REPORT_DIR [--notify] [--ping] [--exit-on-term CODE]

--ping: WATCHDOG=1 every 0.2 s, while REPORT_DIR/hang does not exist.

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

if "--notify" in args and "NOTIFY_SOCKET" in os.environ:
    address = os.environ["NOTIFY_SOCKET"]
    target_addr = "\0" + address[1:] if address.startswith("@") else address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as n:
        n.sendto(f"READY=1\nSTATUS=serving as pid {os.getpid()}".encode(), target_addr)
        while "--ping" in args and not (report_dir / "hang").exists():
            n.sendto(b"WATCHDOG=1", target_addr)
            time.sleep(0.2)

signal.pause()
