"""/items"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import PlainTextResponse

from shop.models import Item, NewItem
from shop.settings import settings
from shop.store import Store, get_store

router = APIRouter(prefix="/items", tags=["items"])
StoreDep = Annotated[Store, Depends(get_store)]
# What bench/devloop.py edits: its answer shows which code serves.
REVISION = 0


@router.get("/revision", response_class=PlainTextResponse)
def revision() -> str:
    return f"revision {REVISION}"


@router.get("", response_model=list[Item])
def list_items(
    store: StoreDep,
    tag: str | None = None,
    page: Annotated[int, Query(ge=0)] = 0,
) -> list[Item]:
    found = [i for i in store.items.values() if tag is None or tag in i.tags]
    start = page * settings.page_size
    return found[start : start + settings.page_size]


@router.get("/{item_id}", response_model=Item)
def get_item(item_id: int, store: StoreDep) -> Item:
    if item_id not in store.items:
        raise HTTPException(404, f"no item {item_id}")
    return store.items[item_id]


@router.post("", response_model=Item, status_code=201)
def add_item(new: NewItem, store: StoreDep) -> Item:
    item = Item(id=max(store.items, default=0) + 1, **new.model_dump())
    store.items[item.id] = item
    return item
