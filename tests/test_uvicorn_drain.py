"""uvicorn's patch points of the drain (listenfd/uvicorn/_drain.py) on its
real h11 protocol and a real socketpair: a connection accepted before the
stop whose protocol is made after uvicorn told each connection to shut down
(the accept and `connection_made` are a loop turn apart) drains like the
others. Left alone it would be kept alive for ever by a busy client, and the
stopping worker would never exit."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from listenfd._drain import GRACE
from listenfd.uvicorn import _drain as drain
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

# Long enough for a drain (one grace), shorter than uvicorn's keep-alive
# timeout (5 s), which would close an idle kept-alive connection anyway.
WITHIN = GRACE * 3
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def hello(scope: Any, receive: Any, send: Any) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


async def made_after_the_stop(request: bytes) -> bytes:
    """What a client reads on a connection made once its server stops:
    everything up to the server's close, or up to WITHIN."""
    drain.patch_protocols()
    config = Config(app=hello, lifespan="off", log_level="warning", access_log=False)
    config.load()
    state = ServerState()
    drain.stopping(state)
    server_end, client_end = socket.socketpair()
    client_end.setblocking(False)
    loop = asyncio.get_running_loop()
    with client_end:
        await loop.connect_accepted_socket(lambda: H11Protocol(config, state, {}), server_end)
        if request:
            await loop.sock_sendall(client_end, request)
        received = b""
        try:
            while chunk := await asyncio.wait_for(loop.sock_recv(client_end, 4096), WITHIN):
                received += chunk
        except asyncio.TimeoutError:  # 3.10: not TimeoutError yet
            return received + b"<still open>"
        return received


def test_an_idle_connection_made_after_the_stop_is_closed() -> None:
    assert asyncio.run(made_after_the_stop(b"")) == b""


def test_a_request_on_a_connection_made_after_the_stop_is_answered_with_close() -> None:
    answer = asyncio.run(made_after_the_stop(REQUEST))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer
    assert b"connection: close" in head.lower(), answer
    assert body == b"ok", "answered, then closed"
