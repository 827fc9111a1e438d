"""An in-memory store, handed to the routes as a dependency."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from shop.models import Item, Order, OrderLine, User


class Store:
    def __init__(self) -> None:
        self.items = {
            i: Item(id=i, name=f"item {i}", price=Decimal(i) + Decimal("0.99"), tags=["A", "b"])
            for i in range(1, 51)
        }
        self.users = {
            1: User(id=1, email="ada@example.org", name="Ada"),
            2: User(id=2, email="alan@example.org", name="Alan"),
        }
        self.orders: dict[int, Order] = {
            1: Order(
                id=1,
                user_id=1,
                lines=[OrderLine(item_id=1, quantity=2)],
                created=datetime(2026, 1, 1, tzinfo=timezone.utc),
            )
        }


_store = Store()


def get_store() -> Store:
    return _store
