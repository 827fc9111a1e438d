"""A tiny HTTP server that takes its socket from the service manager.

    systemd-socket-activate -l 127.0.0.1:8000 --fdname=web python examples/hello.py

Started that way it serves on the inherited socket named "web"; started on its
own it binds 127.0.0.1:8000 (or $HELLO_ADDR) itself. Either way the log says
which, and it sends READY=1 to $NOTIFY_SOCKET once it serves.
examples/test_example_app.py tests it the way a user would, with
listenfd.testing.
"""

from __future__ import annotations

import contextlib
import logging
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import listenfd
import listenfd.notify


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from pid {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    sock = listenfd.bind_or_inherit(os.environ.get("HELLO_ADDR", "127.0.0.1:8000"), name="web")
    server = ThreadingHTTPServer(sock.getsockname()[:2], Hello, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.server_name, server.server_port = sock.getsockname()[:2]
    print(f"hello: serving http://{server.server_name}:{server.server_port}/", flush=True)
    # Tell the service manager (Type=notify) that requests are answered now.
    listenfd.notify.ready()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
