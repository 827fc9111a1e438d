"""/users"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException

from shop.models import Order, User
from shop.store import Store, get_store

router = APIRouter(prefix="/users", tags=["users"])
StoreDep = Annotated[Store, Depends(get_store)]


@router.get("/{user_id}", response_model=User)
def get_user(user_id: int, store: StoreDep) -> User:
    if user_id not in store.users:
        raise HTTPException(404, f"no user {user_id}")
    return store.users[user_id]


@router.get("/{user_id}/orders", response_model=list[Order])
def user_orders(user_id: int, store: StoreDep) -> list[Order]:
    return [o for o in store.orders.values() if o.user_id == user_id]
