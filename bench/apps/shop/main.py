"""The app: `shop.main:app`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from shop.routers import items, orders, users
from shop.settings import settings
from shop.store import get_store


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    get_store()  # warm, as an app would open its database pool
    yield


app = FastAPI(title=settings.name, lifespan=lifespan)
app.include_router(items.router)
app.include_router(users.router)
app.include_router(orders.router)


@app.get("/", response_class=PlainTextResponse)
def hello() -> str:
    return f"hello from pid {os.getpid()}\n"
