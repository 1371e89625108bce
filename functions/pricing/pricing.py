"""Dynamic pricing: a documented elasticity rule over demand signals, inside guardrails.

**Demand.** Views of the item per minute in the last `short_window_s` (5 minutes) against
its usual rate over `long_window_s` (an hour), from `Product Viewed` events.

**Rule** (`elasticity-v1`): with `ratio = (recent + 1) / (usual + 1)` (the +1 keeps a few
views from swinging a rarely seen item), `price = list_price * ratio ** (1 / elasticity)`:
with elasticity 4, demand at twice its usual rate raises the price by 2^(1/4) - 1 = 19 %,
half of it lowers it by 16 %.

**Guardrails.** Per category, `floor` and `ceiling` as multiples of the list price
(`PRICING_GUARDRAILS`); the price is rounded to the cent inside them (the floor rounded up,
the ceiling down), so it is never outside them, whatever the demand (property-tested).

The demo catalog (the recommendation model's generated items) has neither prices nor
categories: `list_price` and `category` derive them from a stable hash of the item id, the
stand-in for a product catalog lookup.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aibackend.contracts.shop import Demand
from aibackend.errors import ConfigError

CATEGORIES = ("books", "electronics", "fashion", "home")


class Guardrail(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    floor: Annotated[float, Field(gt=0, description="Lowest price, times the list price")]
    ceiling: Annotated[float, Field(gt=0, description="Highest price, times the list price")]

    @model_validator(mode="after")
    def _ordered(self) -> Guardrail:
        if not self.floor <= 1 <= self.ceiling:
            raise ValueError(
                f"need floor <= 1 <= ceiling (the list price lies inside), got "
                f"{self.floor} and {self.ceiling}"
            )
        return self


class PricingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    elasticity: Annotated[float, Field(ge=0.5, le=100)] = 4.0
    short_window_s: Annotated[int, Field(ge=60)] = 300
    #: At most a day: the demand table keeps a day of views (`demand.RETENTION_S`).
    long_window_s: Annotated[int, Field(ge=600, le=86_400)] = 3600
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    #: Per category; `default` for the others.
    guardrails: Mapping[str, Guardrail]

    @model_validator(mode="after")
    def _windows(self) -> PricingSettings:
        if self.short_window_s >= self.long_window_s:
            raise ValueError("short_window_s must be shorter than long_window_s")
        if "default" not in self.guardrails:
            raise ValueError("guardrails need a `default` entry")
        return self

    def guardrail(self, category: str) -> Guardrail:
        return self.guardrails.get(category, self.guardrails["default"])

    @property
    def rule(self) -> str:
        return (
            f"elasticity-v1(elasticity={self.elasticity:g}, short={self.short_window_s}s, "
            f"long={self.long_window_s}s)"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PricingSettings:
        e = os.environ if env is None else env
        try:
            return cls(
                elasticity=float(e.get("PRICING_ELASTICITY", "4")),
                short_window_s=int(e.get("PRICING_SHORT_WINDOW_S", "300")),
                long_window_s=int(e.get("PRICING_LONG_WINDOW_S", "3600")),
                currency=e.get("PRICING_CURRENCY", "EUR"),
                guardrails=json.loads(
                    e.get("PRICING_GUARDRAILS", '{"default": {"floor": 0.8, "ceiling": 1.25}}')
                ),
            )
        except (ValueError, ValidationError) as err:
            raise ConfigError(f"pricing settings (PRICING_* in function.toml): {err}") from err


def _digest(item_id: str) -> int:
    return int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big")


def list_price(item_id: str) -> float:
    """The demo catalog's list price: 5 to 500, log-uniform, ending in .99."""
    u = (_digest(item_id) % 1_000_000) / 1_000_000
    return math.floor(5.0 * math.pow(100.0, u)) + 0.99


def category(item_id: str) -> str:
    return CATEGORIES[(_digest(item_id) >> 32) % len(CATEGORIES)]


@dataclass(frozen=True)
class Suggestion:
    price: float
    floor: float
    ceiling: float
    clamped: bool


def suggest(base: float, demand: Demand, rail: Guardrail, elasticity: float) -> Suggestion:
    """The rule's price for `demand`, rounded to the cent within the guardrails."""
    ratio = (demand.recent_per_min + 1) / (demand.usual_per_min + 1)
    raw = base * ratio ** (1 / elasticity)
    floor = math.ceil(round(base * rail.floor * 100, 6)) / 100
    ceiling = math.floor(round(base * rail.ceiling * 100, 6)) / 100
    price = min(max(round(raw, 2), floor), ceiling)
    return Suggestion(price, floor, ceiling, clamped=price != round(raw, 2))
