"""The API's models."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import Enum

from pydantic import BaseModel, Field, field_validator


class Item(BaseModel):
    id: int
    name: str = Field(min_length=1, max_length=80)
    price: Decimal = Field(gt=0, decimal_places=2)
    tags: list[str] = []

    @field_validator("tags")
    @classmethod
    def lower_tags(cls, tags: list[str]) -> list[str]:
        return sorted({t.lower() for t in tags})


class NewItem(BaseModel):
    name: str = Field(min_length=1, max_length=80)
    price: Decimal = Field(gt=0, decimal_places=2)
    tags: list[str] = []


class User(BaseModel):
    id: int
    email: str = Field(pattern=r"^[^@ ]+@[^@ ]+$")
    name: str


class OrderState(str, Enum):
    open = "open"
    paid = "paid"
    shipped = "shipped"


class OrderLine(BaseModel):
    item_id: int
    quantity: int = Field(gt=0, le=1000)


class Order(BaseModel):
    id: int
    user_id: int
    lines: list[OrderLine]
    state: OrderState = OrderState.open
    created: datetime

    @property
    def size(self) -> int:
        return sum(line.quantity for line in self.lines)
