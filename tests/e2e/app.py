"""The application the end-to-end suite deploys at /srv/app, where the example
units in examples/systemd expect it (`granian ... app:app`).

Each answer names what a restart is meant to change: the server pid and uid, the
APP_RELEASE variable (set by an Environment= drop-in or an --env-file), the
version of the `greeting` package (upgraded with pip) and CODE, this file's
own version (a deploy rewrites it). /slow/N answers after N seconds."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import greeting  # at import time: only a restart may pick up a new version

CODE = "1"


async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path.startswith("/slow/"):
        await asyncio.sleep(float(path.rsplit("/", 1)[1]))
    release = os.environ.get("APP_RELEASE", "-")
    body = (
        f"pid {os.getpid()} uid {os.getuid()} release {release} greeting {greeting.VERSION} "
        f"code {CODE}\n"
    ).encode()
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
