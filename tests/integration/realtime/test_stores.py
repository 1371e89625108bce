"""The session-profile and pricing-demand tables: the profile's decay, and each store on
SQLite and on DynamoDB (an in-memory client that applies the same update expressions)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from aibackend.recommend.sessions import (
    HALF_LIFE_S,
    MAX_PROFILE_ITEMS,
    DynamoSessionStore,
    SqliteSessionStore,
    profile,
)
from functions.pricing.demand import DynamoDemandStore, SqliteDemandStore


class FakeDynamo:
    """`SET #a = :x, ...` update_item (ReturnValues UPDATED_OLD), get_item, batch_get_item."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def update_item(self, **kw: Any) -> dict[str, Any]:
        key = kw["Key"]["id"]["S"]
        item = self.items.setdefault(key, {"id": kw["Key"]["id"]})
        old: dict[str, Any] = {}
        for name, value in re.findall(r"(#\w+) = (:\w+)", kw["UpdateExpression"]):
            attr = kw["ExpressionAttributeNames"][name]
            if attr in item:
                old[attr] = item[attr]
            item[attr] = kw["ExpressionAttributeValues"][value]
        return {"Attributes": old} if kw.get("ReturnValues") == "UPDATED_OLD" else {}

    def get_item(self, **kw: Any) -> dict[str, Any]:
        item = self.items.get(kw["Key"]["id"]["S"])
        return {} if item is None else {"Item": json.loads(json.dumps(item))}

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        ((table, req),) = RequestItems.items()
        got = [self.items[k["id"]["S"]] for k in req["Keys"] if k["id"]["S"] in self.items]
        return {"Responses": {table: json.loads(json.dumps(got))}}


def test_the_profile_puts_the_most_viewed_recent_item_last_and_forgets_old_ones() -> None:
    now = 10_000.0
    views = [("old", now - 5 * HALF_LIFE_S), ("a", now - 60), ("b", now - 30), ("b", now - 20)]
    assert profile(views, now) == ["a", "b"]


def test_the_profile_keeps_at_most_its_limit_of_heaviest_items() -> None:
    views = [(f"i{n}", 1_000.0 + n) for n in range(MAX_PROFILE_ITEMS + 10)]
    kept = profile(views, 2_000.0)
    assert len(kept) == MAX_PROFILE_ITEMS and kept[-1] == f"i{MAX_PROFILE_ITEMS + 9}"


@pytest.fixture(params=["sqlite", "dynamodb"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        return SqliteSessionStore(tmp_path / "s.db")
    return DynamoSessionStore("t", client=FakeDynamo())


def test_a_redelivered_view_is_recorded_once_and_sessions_are_separate(sessions: Any) -> None:
    sessions.record("s1", "evt-1", "i1", 100.0)
    sessions.record("s1", "evt-1", "i1", 100.0)
    sessions.record("s1", "evt-2", "i2", 110.0)
    sessions.record("s2", "evt-3", "i3", 120.0)
    assert sorted(sessions.views("s1")) == [("i1", 100.0), ("i2", 110.0)]
    assert sessions.views("nobody") == []


@pytest.fixture(params=["sqlite", "dynamodb"])
def demand(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        return SqliteDemandStore(tmp_path / "d.db")
    return DynamoDemandStore("t", client=FakeDynamo())


def test_views_count_once_per_event_within_the_window(demand: Any) -> None:
    # GIVEN views across several 5-minute buckets, one delivered twice
    for n, at in enumerate([100.0, 400.0, 700.0, 1_000.0]):
        demand.record_view("i1", f"e{n}", at)
    demand.record_view("i1", "e3", 1_000.0)
    demand.record_view("i2", "x", 500.0)
    # THEN a window counts each view once, only its item's, in (since, until]
    assert sorted(demand.views_since("i1", 100.0, 1_000.0)) == [400.0, 700.0, 1_000.0]
    # and the counts the price uses agree: 3 in the window, 2 of them after 500 s
    assert demand.view_counts("i1", 100.0, 500.0, 1_000.0) == (3, 2)
    assert demand.view_counts("i1", 1_000.0, 1_000.0, 2_000.0) == (0, 0)


def test_swap_price_returns_the_previous_suggestion(demand: Any) -> None:
    assert demand.swap_price("i1", 10.5) is None
    assert demand.swap_price("i1", 11.0) == 10.5
    assert demand.swap_price("i2", 3.0) is None
