"""A `Product Viewed` event in: record the view, recompute the item's price from its demand,
and publish `Price Suggested` when the price changed (not on every view)."""

from __future__ import annotations

from typing import Any

from aibackend.contracts import emit, expect, parse
from aibackend.contracts.shop import Demand, PriceSuggestedV1, ProductViewedV1
from aibackend.ports import PutEvent

from .demand import DemandStore
from .pricing import PricingSettings, category, list_price, suggest

SOURCE = "aib.pricing"


def reprice(event: dict[str, Any], settings: PricingSettings, store: DemandStore) -> list[PutEvent]:
    view = expect(parse(event), ProductViewedV1)
    d = view.detail
    at = d.viewed_at.timestamp()
    store.record_view(d.item_id, view.event_id, at)
    total, recent = store.view_counts(
        d.item_id, at - settings.long_window_s, at - settings.short_window_s, at
    )
    demand = Demand(
        recent_per_min=recent * 60 / settings.short_window_s,
        usual_per_min=total * 60 / settings.long_window_s,
        short_window_s=settings.short_window_s,
        long_window_s=settings.long_window_s,
    )
    base, cat = list_price(d.item_id), category(d.item_id)
    s = suggest(base, demand, settings.guardrail(cat), settings.elasticity)
    if store.swap_price(d.item_id, s.price) == s.price:
        return []
    return [
        emit(
            view,
            SOURCE,
            PriceSuggestedV1,
            item_id=d.item_id,
            category=cat,
            currency=settings.currency,
            price=s.price,
            list_price=base,
            floor=s.floor,
            ceiling=s.ceiling,
            clamped=s.clamped,
            demand=demand,
            rule=settings.rule,
        )
    ]
