"""A minimal ASGI app for the README and the systemd examples.

granian --interface asgi --systemd-socket --working-dir examples app:app
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    if scope["type"] != "http":
        return
    body = f"hello from pid {os.getpid()}\n".encode()
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
