"""How a user tests that their server takes its socket from systemd and tells
systemd when it is ready, with listenfd's pytest fixtures and helpers:

    pytest examples/test_example_app.py

The server under test is examples/hello.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import listenfd
from listenfd.testing import NotifyReceiver, SocketActivation, spawn

HELLO = Path(__file__).with_name("hello.py")


def test_hello_serves_on_the_socket_named_web_and_notifies_ready() -> None:
    other = socket.create_server(("127.0.0.1", 0))
    web = socket.create_server(("127.0.0.1", 0))
    with NotifyReceiver() as receiver:
        server = spawn(
            [sys.executable, str(HELLO)],
            [other, web],
            names=["other", "web"],
            notify=receiver,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            ready = receiver.wait_for("READY=1", timeout=30)
            assert ready.pid == server.pid, "from the server itself"
            # Ready means serving: the first request is answered at once.
            host, port = web.getsockname()
            with urllib.request.urlopen(f"http://{host}:{port}/", timeout=5) as answer:
                assert answer.read() == f"hello from pid {server.pid}\n".encode()
        finally:
            server.terminate()
            server.wait(timeout=30)
    other.close()
    web.close()


def test_bind_or_inherit_picks_the_named_socket(socket_activation: SocketActivation) -> None:
    web = socket.create_server(("127.0.0.1", 0))
    admin = socket.create_server(("127.0.0.1", 0))
    socket_activation([admin, web], ["admin", "web"])
    chosen = listenfd.bind_or_inherit("127.0.0.1:8000", name="web")
    assert chosen.getsockname() == web.getsockname()
    chosen.close()
    web.close()
    admin.close()
