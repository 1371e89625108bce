"""The session-profile and pricing-demand tables: the profile's decay, and each store on
SQLite and on DynamoDB (moto)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aibackend.recommend.sessions import (
    HALF_LIFE_S,
    MAX_PROFILE_ITEMS,
    RETAIN_S,
    STORED_ITEMS,
    DynamoSessionStore,
    SessionView,
    SqliteSessionStore,
    profile,
)
from functions.pricing.demand import DynamoDemandStore, ItemView, SqliteDemandStore
from tests.support import create_data_table


def test_the_profile_puts_the_most_viewed_recent_item_last_and_forgets_old_ones() -> None:
    now = 10_000.0
    views = [("old", now - 5 * HALF_LIFE_S), ("a", now - 60), ("b", now - 30), ("b", now - 20)]
    assert profile(views, now) == ["a", "b"]


def test_the_profile_keeps_at_most_its_limit_of_heaviest_items() -> None:
    views = [(f"i{n}", 1_000.0 + n) for n in range(MAX_PROFILE_ITEMS + 10)]
    kept = profile(views, 2_000.0)
    assert len(kept) == MAX_PROFILE_ITEMS and kept[-1] == f"i{MAX_PROFILE_ITEMS + 9}"


@pytest.fixture(params=["sqlite", "dynamodb"])
def sessions(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    if request.param == "sqlite":
        yield SqliteSessionStore(tmp_path / "s.db")
        return
    with _moto_table(monkeypatch, "aib-recommend-sessions") as ddb:
        yield DynamoSessionStore("aib-recommend-sessions", client=ddb)


def test_a_redelivered_view_is_recorded_once_and_sessions_are_separate(sessions: Any) -> None:
    # GIVEN a view of i1, delivered twice, then a view of i2, and another session's view
    sessions.record("s1", "evt-1", "i1", 100.0)
    sessions.record("s1", "evt-1", "i1", 100.0)
    sessions.record("s1", "evt-2", "i2", 110.0)
    sessions.record("s2", "evt-3", "i3", 120.0)
    # THEN i1 counts once (twice, it would outweigh the later i2 and come last)
    assert sessions.profile("s1", 200.0) == ["i1", "i2"]
    assert sessions.profile("s2", 200.0) == ["i3"]
    assert sessions.profile("nobody", 200.0) == []


def test_both_stores_give_the_same_profiles_as_the_definition(sessions: Any) -> None:
    # GIVEN three hours of a session's views over 40 items, some out of order, some repeated
    rng = random.Random(7)
    views = [(f"i{rng.randrange(40)}", 10_000.0 + rng.uniform(0, 3 * 3_600)) for _ in range(150)]
    for n, (item, at) in enumerate(views):
        sessions.record("s", f"evt-{n}", item, at)
    # THEN at any time after the last view the profile is the one `profile` computes from them
    for now in (20_800.0, 21_000.0, 25_000.0, 40_000.0):
        assert sessions.profile("s", now) == profile(views, now)


def test_a_batch_of_views_gives_the_profiles_of_the_same_views_one_at_a_time(
    sessions: Any,
) -> None:
    # GIVEN a batch of views of two sessions as shop_events gets it, with a view delivered twice
    batch = [
        SessionView("s1", "evt-1", "i1", 100.0),
        SessionView("s2", "evt-2", "i2", 105.0),
        SessionView("s1", "evt-3", "i3", 110.0),
        SessionView("s1", "evt-1", "i1", 100.0),
    ]
    # WHEN it is recorded in one call
    sessions.record_many(batch)
    # THEN each session's profile is the one its views give, the repeated view counted once
    assert sessions.profile("s1", 200.0) == profile([("i1", 100.0), ("i3", 110.0)], 200.0)
    assert sessions.profile("s1", 200.0) == ["i1", "i3"]
    assert sessions.profile("s2", 200.0) == ["i2"]


def test_a_crawlers_session_stays_a_small_item_on_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a session viewing 300 different products (three times what the item keeps), one a
    # second (one attribute per view used to pass DynamoDB's 400 KB item limit at ~5,000
    # views, and later views then failed)
    with _moto_table(monkeypatch, "t") as ddb:
        store = DynamoSessionStore("t", client=ddb)
        for n in range(300):
            store.record("crawler", f"evt-{n}", f"p{n:05d}", 1_000.0 + n)
        # WHEN its item is read
        item = ddb.get_item(TableName="t", Key={"id": {"S": "session#crawler"}})["Item"]
        # THEN it holds the STORED_ITEMS heaviest weights, not the views: a few KB
        assert len(json.loads(item["w"]["S"])) == STORED_ITEMS
        assert len(json.dumps(item)) < 6_000
        # AND the profile is the most recent MAX_PROFILE_ITEMS, newest last, as from the views
        latest = [f"p{n:05d}" for n in range(300 - MAX_PROFILE_ITEMS, 300)]
        assert store.profile("crawler", 2_000.0) == latest
        # AND an early view delivered again is still recognized and adds nothing
        store.record("crawler", "evt-0", "p00000", 1_000.0)
        assert store.profile("crawler", 2_000.0) == latest


def test_a_view_written_while_another_is_being_recorded_is_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a second Lambda recording another view of the session between this one's read and
    # its write (the session item changes under it)
    with _moto_table(monkeypatch, "t") as ddb:
        other = DynamoSessionStore("t", client=ddb)

        class Interleaved:
            exceptions = ddb.exceptions
            reads = 0

            def get_item(self, **kw: Any) -> Any:
                got = ddb.get_item(**kw)
                Interleaved.reads += 1
                if Interleaved.reads == 1:
                    other.record("s1", "evt-9", "i9", 105.0)
                return got

            def transact_write_items(self, **kw: Any) -> Any:
                return ddb.transact_write_items(**kw)

        # WHEN this view is recorded
        DynamoSessionStore("t", client=Interleaved()).record("s1", "evt-1", "i1", 110.0)
        # THEN its write was refused once, read again, and both views count
        assert Interleaved.reads == 2
        assert other.profile("s1", 200.0) == ["i9", "i1"]


@pytest.fixture(params=["sqlite", "dynamodb"])
def demand(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    if request.param == "sqlite":
        yield SqliteDemandStore(tmp_path / "d.db")
        return
    # moto, not the fake above: the store writes a view in a transaction with a condition
    with _moto_table(monkeypatch, "aib-pricing-demand") as ddb:
        yield DynamoDemandStore("aib-pricing-demand", client=ddb)


@contextmanager
def _moto_table(monkeypatch: pytest.MonkeyPatch, name: str) -> Iterator[Any]:
    """A DynamoDB client under moto with the data table `name`."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        ddb = boto3.client("dynamodb")
        create_data_table(ddb, name)
        yield ddb


def test_views_count_once_per_event_in_whole_minutes(demand: Any) -> None:
    # GIVEN views in minutes 1, 6, 11 and 16 (at 100 s, 400 s, 700 s, 1,000 s), one of them
    # delivered twice, and another item's view
    assert [
        demand.record_view("i1", f"e{n}", at) for n, at in enumerate([100.0, 400.0, 700.0, 1_000.0])
    ] == [True] * 4
    assert demand.record_view("i1", "e3", 1_000.0) is False
    assert demand.record_view("i2", "x", 500.0) is True
    # THEN a window counts each view once, only its item's, in the minutes after `since`'s up
    # to `until`'s: 3 after minute 1 (100 s), 2 of them after minute 8 (500 s)
    assert demand.view_counts("i1", 100.0, 500.0, 1_000.0) == (3, 2)
    # AND the boundaries are whole minutes: since = 59 s is minute 0, so minute 1 counts;
    # until = 959 s is minute 15, so the view at 1,000 s (minute 16) does not
    assert demand.view_counts("i1", 59.0, 500.0, 959.0) == (3, 1)
    assert demand.view_counts("i1", 1_000.0, 1_000.0, 2_000.0) == (0, 0)
    assert demand.view_counts("nothing", 0.0, 0.0, 3_600.0) == (0, 0)


def test_a_products_minute_is_one_counter_item_whatever_its_views(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN 300 views of one product within one minute, on DynamoDB (one attribute per view
    # on a five-minute item passed the 400 KB item limit at ~7,000 views, then views failed)
    with _moto_table(monkeypatch, "t") as ddb:
        store = DynamoDemandStore("t", client=ddb)
        for n in range(300):
            store.record_view("hot", f"{n:08d}-7c1e-4f55-9d39-2b6b7a0e5d11", 600.0 + n / 10)
        # WHEN the minute is read
        item = ddb.get_item(TableName="t", Key={"id": {"S": "views#hot#10"}})["Item"]
        # THEN it holds a count, not the views: its size does not grow with the traffic
        assert set(item) == {"id", "n", "expiration"}
        assert item["n"] == {"N": "300"}
        assert store.view_counts("hot", 0.0, 0.0, 659.0) == (300, 300)


def test_last_prices_are_those_set_last_per_item(demand: Any) -> None:
    # GIVEN no price yet, then prices set for two items, then one of them again
    assert demand.last_prices(["i1", "i2"]) == {}
    demand.set_prices({"i1": 10.5, "i2": 3.0})
    demand.set_prices({"i1": 11.0})
    # THEN each item's last price is the one set last; an item never priced has none
    assert demand.last_prices(["i1", "i2", "i3", "i1"]) == {"i1": 11.0, "i2": 3.0}


def test_a_batch_counts_each_view_with_the_earlier_views_only(demand: Any) -> None:
    # GIVEN a view of i1 counted on its own, a minute earlier
    demand.record_view("i1", "e0", 120.0)
    # WHEN a batch of views is counted: i1 twice in minute 3, i2 once, and e0 delivered again
    views = [
        ItemView("i1", "e1", 180.0),
        ItemView("i2", "e2", 185.0),
        ItemView("i1", "e3", 190.0),
        ItemView("i1", "e0", 120.0),
    ]
    counts = demand.record_and_count(views, 3_600, 60)
    # THEN each view sees the views before it (its own included), as one at a time would: the
    # second i1 view of the batch counts the first; the redelivered one adds nothing (its
    # window ends in its own minute, which holds only itself)
    assert counts == [(2, 1), (1, 1), (3, 2), (1, 1)]
    assert demand.view_counts("i1", 0.0, 0.0, 190.0) == (3, 3)


def test_the_local_demand_table_forgets_a_products_views_past_the_longest_window(
    tmp_path: Path,
) -> None:
    # GIVEN views of i1 in minutes 1 and 3, and of i2 in minute 2
    store = SqliteDemandStore(tmp_path / "d.db")
    for item, view, at in [("i1", "a", 100.0), ("i1", "b", 200.0), ("i2", "c", 150.0)]:
        store.record_view(item, view, at)
    # WHEN i1 is viewed again a day and two minutes after its first view
    later = 100.0 + 86_400 + 120
    store.record_view("i1", "d", later)
    # THEN i1's rows from before the day's window are gone, i2's wait for its own next view
    rows = store._conn.execute("SELECT item, view FROM item_views ORDER BY item, view").fetchall()
    assert rows == [("i1", "d"), ("i2", "c")]
    # AND the longest window (a day) counts what it counted before the rows went
    assert store.view_counts("i1", later - 86_400, later - 3_600, later) == (1, 1)


def test_the_local_session_table_forgets_views_a_day_old(tmp_path: Path) -> None:
    # GIVEN views of two sessions, 100 s apart
    store = SqliteSessionStore(tmp_path / "s.db")
    store.record("s1", "a", "i1", 100.0)
    store.record("s2", "b", "i2", 200.0)
    # WHEN another session's view arrives a day and a minute after the first view
    store.record("s3", "c", "i3", 100.0 + RETAIN_S + 60)
    # THEN the view more than a day old is gone (DynamoDB would have expired it), the other
    # stays
    assert store.views("s1") == []
    assert store.views("s2") == [("i2", 200.0)]
