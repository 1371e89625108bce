"""`Product Viewed` events in (a batch at a time): record each view, recompute its item's price
from its demand, and publish `Price Suggested` when the price changed (not on every view)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aibackend.contracts import Parsed, emit
from aibackend.contracts.shop import Demand, PriceSuggestedV1, ProductViewedV1
from aibackend.ports import PutEvent

from .demand import DemandStore, ItemView
from .pricing import PricingSettings, category, list_price, suggest

SOURCE = "aib.pricing"


@dataclass(frozen=True)
class Repriced:
    """A view's outcome: its item's price now, and the `Price Suggested` to publish for it
    (none when the price is the one suggested last)."""

    item_id: str
    price: float
    events: list[PutEvent]


def reprice(
    views: Sequence[Parsed[ProductViewedV1]], settings: PricingSettings, store: DemandStore
) -> list[Repriced]:
    """Each view's outcome, in order. A view's demand counts the batch's earlier views of its
    item (not its later ones) and its price is compared with the one an earlier view of the
    batch suggested: the batch ends where the same views one at a time would. The prices are
    not stored here: `store.set_prices` once they are published, so a failed put leaves the
    old price and the view's retry publishes the change."""
    counts = store.record_and_count(
        [ItemView(v.detail.item_id, v.event_id, v.detail.viewed_at.timestamp()) for v in views],
        settings.long_window_s,
        settings.short_window_s,
    )
    last = store.last_prices(v.detail.item_id for v in views)
    out: list[Repriced] = []
    for view, (total, recent) in zip(views, counts, strict=True):
        item = view.detail.item_id
        demand = Demand(
            recent_per_min=recent * 60 / settings.short_window_s,
            usual_per_min=total * 60 / settings.long_window_s,
            short_window_s=settings.short_window_s,
            long_window_s=settings.long_window_s,
        )
        base, cat = list_price(item), category(item)
        s = suggest(base, demand, settings.guardrail(cat), settings.elasticity)
        changed = last.get(item) != s.price
        last[item] = s.price
        events = [
            emit(
                view,
                SOURCE,
                PriceSuggestedV1,
                item_id=item,
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
        out.append(Repriced(item, s.price, events if changed else []))
    return out
