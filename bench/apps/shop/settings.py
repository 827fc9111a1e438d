"""Settings read once from the environment, as real apps do at import time."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field


class Settings(BaseModel):
    name: str = "shop"
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    page_size: int = Field(default=20, ge=1, le=100)


settings = Settings(
    name=os.environ.get("SHOP_NAME", "shop"),
    currency=os.environ.get("SHOP_CURRENCY", "EUR"),
)
