"""/orders"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel

from shop.models import Order, OrderLine, OrderState
from shop.store import Store, get_store

router = APIRouter(prefix="/orders", tags=["orders"])
StoreDep = Annotated[Store, Depends(get_store)]


class NewOrder(BaseModel):
    user_id: int
    lines: list[OrderLine]


@router.post("", response_model=Order, status_code=201)
def place_order(new: NewOrder, store: StoreDep) -> Order:
    if new.user_id not in store.users:
        raise HTTPException(422, f"no user {new.user_id}")
    missing = [line.item_id for line in new.lines if line.item_id not in store.items]
    if missing:
        raise HTTPException(422, f"no items {missing}")
    order = Order(
        id=max(store.orders, default=0) + 1,
        user_id=new.user_id,
        lines=new.lines,
        created=datetime.now(timezone.utc),
    )
    store.orders[order.id] = order
    return order


@router.post("/{order_id}/pay", response_model=Order)
def pay(order_id: int, store: StoreDep) -> Order:
    order = store.orders.get(order_id)
    if order is None:
        raise HTTPException(404, f"no order {order_id}")
    order.state = OrderState.paid
    return order
