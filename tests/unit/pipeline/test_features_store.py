"""The online feature table, one contract for both adapters: SQLite (local) and DynamoDB
(moto)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from moto import mock_aws

from aibackend.fraud.velocity import DAY_US, HOUR_US, Txn, epoch_us, histories
from aibackend.pipeline.features import DynamoFeatureStore, FeatureStore, SqliteFeatureStore
from tests.support import create_data_table

T = epoch_us("2024-03-10T00:30:00+00:00")


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FeatureStore]:
    if request.param == "sqlite":
        yield SqliteFeatureStore(tmp_path / "features.db")
        return
    with _features_table(monkeypatch) as db:
        yield DynamoFeatureStore("features", db)


@contextmanager
def _features_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A DynamoDB client (moto) with the table `features`, keyed as CDK keys every data table."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        import boto3

        db = boto3.client("dynamodb")
        create_data_table(db, "features")
        yield db


def _times(store: FeatureStore, card: str, since: int, until: int) -> list[int]:
    got = store.histories([card], since, until)
    return got[card].at_us.tolist() if card in got else []


def test_histories_returns_the_cards_transactions_in_the_half_open_range(
    store: FeatureStore,
) -> None:
    # GIVEN transactions of two cards over three UTC days (one exactly at each bound)
    store.put(
        [
            Txn("c#1", "a", T - DAY_US, 1.0),
            Txn("c#1", "b", T - HOUR_US, 2.0),
            Txn("c#1", "c", T, 3.0),
            Txn("c#1", "d", T + DAY_US, 4.0),
            Txn("c2", "e", T - HOUR_US, 5.0),
        ]
    )
    # WHEN one card's history in [T - 1 day, T + 1 day) is read
    # THEN it holds that card's transactions from the lower bound, without the upper one
    assert _times(store, "c#1", T - DAY_US, T + DAY_US) == [T - DAY_US, T - HOUR_US, T]
    assert _times(store, "c2", T, T + DAY_US) == []
    assert store.histories(["nobody"], 0, T + DAY_US) == {}


def test_put_given_the_same_transactions_again_keeps_one_copy_each(store: FeatureStore) -> None:
    # GIVEN a chunk written, then written again (a redelivery) in another order
    chunk = [Txn("c1", f"t{i}", T + i * HOUR_US, float(i)) for i in range(5)]
    store.put(chunk)
    store.put(list(reversed(chunk)))
    # WHEN the card's history is read THEN every transaction is there once, in time order
    h = store.histories(["c1"], T, T + DAY_US)["c1"]
    assert h.at_us.tolist() == [t.at_us for t in chunk]
    np.testing.assert_array_equal(h.amount_eur, [0.0, 1.0, 2.0, 3.0, 4.0])


def test_put_given_a_burst_of_one_cards_day_keeps_every_transaction(store: FeatureStore) -> None:
    # GIVEN 120 transactions of one card on one day in one chunk (more than one DynamoDB
    # update expression holds)
    burst = [Txn("c1", f"b{i:03d}", T + i * 10**6, 1.0) for i in range(120)]
    # WHEN written THEN all 120 are read back
    store.put(burst)
    assert len(store.histories(["c1"], T, T + HOUR_US)["c1"].at_us) == 120


def test_histories_of_many_cards_match_the_definition_built_from_the_transactions(
    store: FeatureStore,
) -> None:
    # GIVEN many cards' transactions written out of time order, one card with two
    # transactions at the same instant and one card with none in the window
    rng = np.random.default_rng(5)
    txns = [
        Txn(
            f"card-{rng.integers(40):02d}",
            f"t{i}",
            T + int(rng.integers(-DAY_US, DAY_US)),
            float(i),
        )
        for i in range(400)
    ]
    txns += [
        Txn("twin", "x", T, 1.0),
        Txn("twin", "y", T, 2.0),
        Txn("late", "z", T + 2 * DAY_US, 9.0),
    ]
    store.put(txns)
    cards = sorted({t.card_id for t in txns} | {"nobody"})
    # WHEN all of them are read in one call
    got = store.histories(reversed(cards), T - DAY_US, T + DAY_US)
    # THEN each card's history is its transactions in the range, in time order: the same arrays
    # the in-memory definition (`velocity.histories`) builds, and nothing for the others
    expected = histories(t for t in txns if T - DAY_US <= t.at_us < T + DAY_US)
    assert sorted(got) == sorted(expected)
    for card in expected:
        assert got[card].at_us.tolist() == expected[card].at_us.tolist(), card
        assert sorted(got[card].amount_eur.tolist()) == sorted(expected[card].amount_eur.tolist())
    assert "late" not in got and "nobody" not in got


class _Recording:
    """A DynamoDB client that counts requests in flight (each takes 20 ms, like a round trip)
    and answers its first two BatchGetItems with half their keys unprocessed (throttled)."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self._lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0
        self.throttles_left = 2

    def _call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(0.02)
            return fn(**kwargs)
        finally:
            with self._lock:
                self.in_flight -= 1

    def update_item(self, **kwargs: Any) -> Any:
        return self._call(self._db.update_item, **kwargs)

    def batch_get_item(self, **kwargs: Any) -> Any:
        ((table, request),) = kwargs["RequestItems"].items()
        keys = request["Keys"]
        with self._lock:
            throttle = len(keys) > 1 and self.throttles_left > 0
            self.throttles_left -= throttle
        if throttle:
            half = len(keys) // 2
            got = self._call(
                self._db.batch_get_item,
                RequestItems={table: {**request, "Keys": keys[:half]}},
            )
            got["UnprocessedKeys"] = {table: {**request, "Keys": keys[half:]}}
            return got
        return self._call(self._db.batch_get_item, **kwargs)


def test_dynamodb_requests_run_side_by_side_and_throttled_reads_are_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with _features_table(monkeypatch) as db:
        client = _Recording(db)
        store = DynamoFeatureStore("features", client, concurrency=8)
        # GIVEN 60 cards' transactions over three days (180 card-day items)
        txns = [
            Txn(f"card-{c:02d}", f"t{c}-{d}", T + d * DAY_US, float(c + d))
            for c in range(60)
            for d in range(3)
        ]
        # WHEN they are written and read back (240 card-days to look up: three BatchGetItems,
        # two of them answered with half their keys unprocessed)
        store.put(txns)
        writes_in_flight = client.most_in_flight
        got = store.histories([f"card-{c:02d}" for c in range(60)], T, T + 3 * DAY_US)
    # THEN the writes overlapped (one at a time, 180 round trips would be 3.6 s)
    assert writes_in_flight > 1
    # AND every card's three transactions came back, the unprocessed keys included
    assert client.throttles_left == 0
    assert sorted(got) == [f"card-{c:02d}" for c in range(60)]
    assert all(h.at_us.tolist() == [T, T + DAY_US, T + 2 * DAY_US] for h in got.values())
