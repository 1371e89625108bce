"""Dynamic pricing: the rule never leaves its guardrails (property test), its settings are
checked, and through the runtime a burst of views raises the price, chained to the views."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aibackend.contracts import parse
from aibackend.contracts.shop import Demand, PriceSuggestedV1
from aibackend.errors import ConfigError
from aibackend.local.runtime import LocalRuntime
from aibackend.ports import PutEvent
from functions.pricing.pricing import (
    Guardrail,
    PricingSettings,
    category,
    list_price,
    suggest,
)
from tests.conftest import load_event
from tests.support import running_runtime, wait_for

rates = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(
    cents=st.integers(min_value=1, max_value=100_000_000),
    recent=rates,
    usual=rates,
    floor=st.floats(min_value=0.01, max_value=1.0),
    ceiling=st.floats(min_value=1.0, max_value=10.0),
    elasticity=st.floats(min_value=0.5, max_value=100),
)
def test_the_price_never_leaves_the_guardrails_whatever_the_demand(
    cents: int, recent: float, usual: float, floor: float, ceiling: float, elasticity: float
) -> None:
    # GIVEN any whole-cent list price, demand, guardrail and elasticity
    base = cents / 100
    demand = Demand(
        recent_per_min=recent, usual_per_min=usual, short_window_s=300, long_window_s=3600
    )
    # WHEN the rule prices it
    s = suggest(base, demand, Guardrail(floor=floor, ceiling=ceiling), elasticity)
    # THEN the price is a whole cent within [floor, ceiling], both within the guardrail
    assert base * floor - 1e-9 <= s.floor <= s.price <= s.ceiling <= base * ceiling + 1e-9
    assert round(s.price, 2) == s.price


def test_demand_above_usual_raises_the_price_and_below_lowers_it() -> None:
    rail = Guardrail(floor=0.5, ceiling=2.0)

    def price(recent: float, usual: float) -> float:
        d = Demand(
            recent_per_min=recent, usual_per_min=usual, short_window_s=300, long_window_s=3600
        )
        return suggest(100.0, d, rail, 4.0).price

    assert price(1.0, 1.0) == 100.0
    assert price(3.0, 1.0) == pytest.approx(100 * 2**0.25, abs=0.01)
    assert price(0.0, 3.0) < 100.0
    assert suggest(
        100.0,
        Demand(recent_per_min=1e5, usual_per_min=0, short_window_s=300, long_window_s=3600),
        rail,
        4.0,
    ).clamped


def test_guardrails_that_exclude_the_list_price_are_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match="floor <= 1 <= ceiling"):
        PricingSettings.from_env(
            {"PRICING_GUARDRAILS": '{"default": {"floor": 1.2, "ceiling": 1.5}}'}
        )
    with pytest.raises(ConfigError, match="default"):
        PricingSettings.from_env(
            {"PRICING_GUARDRAILS": '{"books": {"floor": 0.9, "ceiling": 1.1}}'}
        )


def test_a_long_window_beyond_the_tables_day_of_views_is_refused() -> None:
    # (the demand table keeps a day of views: a longer window would count fewer than it says)
    with pytest.raises(ConfigError, match="long_window_s"):
        PricingSettings.from_env({"PRICING_LONG_WINDOW_S": "90000"})
    assert PricingSettings.from_env({"PRICING_LONG_WINDOW_S": "86400"}).long_window_s == 86_400


def test_the_demo_catalog_gives_each_item_a_stable_price_and_category() -> None:
    assert list_price("i00017") == list_price("i00017")
    assert 5 < list_price("i00017") < 501 and round(list_price("i00017") % 1, 2) == 0.99
    assert category("i00017") in ("books", "electronics", "fashion", "home")


@pytest.fixture(scope="module")
def pricing_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    import shutil

    from tests.support import FUNCTIONS

    root = tmp_path_factory.mktemp("pricing-functions") / "functions"
    shutil.copytree(
        FUNCTIONS / "pricing", root / "pricing", ignore=shutil.ignore_patterns("__pycache__")
    )
    state = tmp_path_factory.mktemp("pricing-state") / "state"
    with running_runtime(root, state) as rt:
        yield rt


def suggestions(rt: LocalRuntime, item: str) -> list[tuple[str, PriceSuggestedV1]]:
    """(the view that caused it, the suggestion) of each `Price Suggested` for `item`."""
    events = rt.bus.archived(limit=1_000, detail_type="Price Suggested")
    out = [parse(e).detail for e in reversed(events)]
    return [(d.caused_by, d) for d in out if isinstance(d, PriceSuggestedV1) and d.item_id == item]


def settled(rt: LocalRuntime) -> bool:
    """Every view put so far is priced: delivered by the bus and consumed from the queue."""
    bus, queue = rt.bus.stats(), rt.queues.get("pricing-views").stats()
    return bus.pending + bus.in_flight + queue.visible + queue.in_flight == 0


def test_a_burst_of_views_raises_the_price_within_the_guardrails(
    pricing_runtime: LocalRuntime,
) -> None:
    # GIVEN an item viewed once a minute for an hour (its usual rate)
    item, start = "i00042", datetime(2026, 11, 27, 8, tzinfo=UTC)
    times = [start + timedelta(minutes=m) for m in range(60)]
    # AND then 30 views in its last 5 minutes
    times += [start + timedelta(minutes=60, seconds=10 * s) for s in range(30)]
    ids = []
    for i, at in enumerate(times):
        put = pricing_runtime.bus.put_events(
            [
                PutEvent(
                    source="aib.shop",
                    detail_type="Product Viewed",
                    detail={
                        "schema_version": "1",
                        "session_id": f"s{i % 7}",
                        "item_id": item,
                        "viewed_at": at.isoformat(),
                    },
                )
            ]
        )
        ids.append(str(put.event_ids[0]))
    # WHEN every view has been priced
    wait_for(lambda: settled(pricing_runtime), timeout=60)
    got = suggestions(pricing_runtime, item)
    # THEN the burst's views raised the price above the list price (two batches are priced at
    # a time, so the order of the suggestions is not the views' order)
    burst = set(ids[60:])
    assert max(d.price for cause, d in got if cause in burst) > list_price(item)
    # AND every suggestion stayed inside the rails, each caused by one of the views
    for cause, d in got:
        assert d.floor <= d.price <= d.ceiling
        assert d.list_price == list_price(item)
        assert cause in ids


def test_the_lambda_handler_prices_the_sample_aws_event(pricing_runtime: LocalRuntime) -> None:
    # GIVEN the AWS-shaped sample: an SQS batch of two Product Viewed events (i00017, i00023)
    sample = load_event("sqs/pricing_batch")
    [first, second] = [json.loads(r["body"])["id"] for r in sample["Records"]]
    # WHEN the handler is invoked with it as Lambda's SQS poller would
    answer = pricing_runtime.hosts["pricing"].invoke(sample)
    # THEN no message is left for a retry, and each view's first price was suggested: one view
    # in the last 5 minutes and in the last hour
    assert answer == {"batchItemFailures": []}
    demand = Demand(
        recent_per_min=0.2, usual_per_min=1 / 60, short_window_s=300, long_window_s=3600
    )
    for item, cause in (("i00017", first), ("i00023", second)):
        [(by, d)] = wait_for(lambda item=item: suggestions(pricing_runtime, item))
        assert by == cause
        rail = PricingSettings.from_env({}).guardrail(category(item))
        assert d.price == suggest(list_price(item), demand, rail, 4.0).price
    # AND the same batch delivered again publishes nothing more (the event ledger)
    assert pricing_runtime.hosts["pricing"].invoke(sample) == {"batchItemFailures": []}
    assert len(suggestions(pricing_runtime, "i00017")) == 1
