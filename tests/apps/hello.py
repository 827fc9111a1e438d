"""Hello-world apps for every Granian interface; each answers with its pid."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any


def _body(path: str) -> bytes:
    if path == "/env":
        listen = {k: v for k, v in os.environ.items() if k.startswith("LISTEN_")}
        return f"{json.dumps(listen)} pid {os.getpid()}\n".encode()
    if path.startswith("/slow/"):
        time.sleep(float(path.rsplit("/", 1)[1]))
    return f"hello from pid {os.getpid()}\n".encode()


async def asgi(
    scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = _body(scope["path"])
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = _body(environ.get("PATH_INFO", "/"))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def rsgi(scope: Any, proto: Any) -> None:
    body = _body(scope.path)
    proto.response_bytes(200, [("content-type", "text/plain")], body)
