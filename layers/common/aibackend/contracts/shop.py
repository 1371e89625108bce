"""Contracts of the shop events: `Product Viewed` (the storefront, `aib.shop` in the
simulator) and `Price Suggested` (emitted by `functions/pricing`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from aibackend.contracts.base import Detail, EmittedDetail, Parsed, expect, parse, register


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


@register
class ProductViewedV1(Detail):
    """A shopper opened a product page. `session_id` groups one visit's views; `user_id` is
    set when the shopper is signed in."""

    detail_type = "Product Viewed"
    version = "1"

    schema_version: Literal["1"] = "1"
    session_id: Id
    user_id: Id | None = None
    item_id: Annotated[str, Field(min_length=1, max_length=64, description="Catalog item id")]
    viewed_at: Annotated[datetime, AfterValidator(_aware)]


class Demand(BaseModel):
    """The demand signal a price came from: views of the item per minute, recent and usual."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recent_per_min: Annotated[float, Field(ge=0, description="Views per minute, short window")]
    usual_per_min: Annotated[float, Field(ge=0, description="Views per minute, long window")]
    short_window_s: Annotated[int, Field(ge=1)]
    long_window_s: Annotated[int, Field(ge=1)]


Money = Annotated[float, Field(gt=0, le=1_000_000)]


@register
class PriceSuggestedV1(EmittedDetail):
    """A new price for an item (source `aib.pricing`), always within `[floor, ceiling]`;
    `clamped` says a guardrail bound it."""

    detail_type = "Price Suggested"
    version = "1"

    schema_version: Literal["1"] = "1"
    item_id: Annotated[str, Field(min_length=1, max_length=64)]
    category: Annotated[str, Field(min_length=1, max_length=64)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    price: Money
    list_price: Money
    floor: Money
    ceiling: Money
    clamped: bool
    demand: Demand
    rule: Annotated[str, Field(description="The pricing rule and its parameters")]


def viewed(event: Mapping[str, Any]) -> Parsed[ProductViewedV1]:
    """The event's `Product Viewed` v1 detail; a `ContractError` for anything else (what the
    two consumers of views, shop_events and pricing, accept)."""
    return expect(parse(event), ProductViewedV1)
