"""Real-time fraud's history features (functions/fraud_events/scoring.py) against the one
definition, `aibackend.fraud.velocity`, and the pipeline's score stage, on the same
transactions."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aibackend.contracts import parse
from aibackend.fraud.generator import generate_transactions, to_records
from aibackend.fraud.velocity import HISTORY_COLUMNS, Txn, amount_eur, epoch_us, histories
from aibackend.fraud.velocity import history_columns as velocity_columns
from aibackend.pipeline.features import SqliteFeatureStore
from aibackend.pipeline.score import online_columns
from functions.fraud_events.scoring import online_transaction


def created_event(record: dict[str, Any], event_id: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "detail-type": "Transaction Created",
        "source": "aib.payments",
        "detail": {**record, "schema_version": "1"},
    }


def burst(card: str, n: int, start: datetime) -> list[dict[str, Any]]:
    """`n` purchases of one card, five minutes apart."""
    return [
        {
            "transaction_id": f"burst-{i}",
            "card_id": card,
            "amount": 20.0 + i,
            "currency": "GBP",
            "merchant_category": "electronics",
            "timestamp": (start + timedelta(minutes=5 * i)).isoformat(),
            "card_age_days": 30,
            "card_present": False,
            "country_mismatch": True,
        }
        for i in range(n)
    ]


@pytest.fixture
def records() -> list[dict[str, Any]]:
    generated = to_records(generate_transactions(150, seed=7, n_cards=4))
    card = generated[0]["card_id"]
    start = datetime.fromisoformat(generated[75]["timestamp"])
    both = [*generated, *burst(card, 6, start)]
    return sorted(both, key=lambda r: epoch_us(r["timestamp"]))


def realtime(records: list[dict[str, Any]], store: SqliteFeatureStore) -> list[tuple[Any, ...]]:
    out = []
    for i, r in enumerate(records):
        txn = online_transaction(parse(created_event(r, f"evt-{i}")), store)  # type: ignore[arg-type]
        out.append(tuple(getattr(txn, name) for name in HISTORY_COLUMNS))
    return out


def same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    def norm(v: Any) -> Any:
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

    return [tuple(map(norm, x)) for x in a] == [tuple(map(norm, x)) for x in b]


@pytest.mark.slow
def test_realtime_features_equal_the_shared_definition(
    records: list[dict[str, Any]], tmp_path: Path
) -> None:
    # GIVEN transactions of a few cards, one of them with a burst, arriving in event-time order
    # WHEN the real-time path scores each one as it arrives
    got = realtime(records, SqliteFeatureStore(tmp_path / "features.db"))
    # THEN each feature vector is what the definition computes from all the transactions
    txns = [
        Txn(
            r["card_id"],
            r["transaction_id"],
            epoch_us(r["timestamp"]),
            amount_eur(r["amount"], r["currency"]),
        )
        for r in records
    ]
    cols = velocity_columns(
        [t.card_id for t in txns],
        [t.at_us for t in txns],
        [r["currency"] for r in records],
        histories(txns),
    )
    expected = list(zip(*(cols[name] for name in HISTORY_COLUMNS), strict=True))
    assert same(got, expected)
    # and the burst is visible: its sixth purchase sees the five before it within the hour
    burst_1h = [v[0] for r, v in zip(records, got, strict=True) if r["transaction_id"] == "burst-5"]
    assert burst_1h[0] >= 5


@pytest.mark.slow
def test_realtime_features_equal_the_pipeline_score_stage(
    records: list[dict[str, Any]], tmp_path: Path
) -> None:
    got = realtime(records, SqliteFeatureStore(tmp_path / "realtime.db"))
    # The pipeline writes a whole chunk first; a transaction's window ends before its own time,
    # so later ones in the chunk change nothing.
    names = ("card_id", "transaction_id", "amount", "currency", "timestamp")
    columns = {name: [r[name] for r in records] for name in names}
    cols = online_columns(columns, SqliteFeatureStore(tmp_path / "pipeline.db"))
    assert same(got, list(zip(*(cols[name] for name in HISTORY_COLUMNS), strict=True)))


def test_a_redelivered_event_changes_no_feature_value(tmp_path: Path) -> None:
    # GIVEN a burst of four purchases already scored
    store = SqliteFeatureStore(tmp_path / "features.db")
    purchases = burst("card-9", 4, datetime.fromisoformat("2026-11-27T10:00:00+00:00"))
    first = realtime(purchases, store)
    # WHEN every event is delivered a second time
    again = realtime(purchases, store)
    # THEN each transaction gets the same features (the table is keyed by transaction id)
    assert again == first == [(0, 0, None), (1, 1, 20.0), (2, 2, 20.5), (3, 3, 21.0)]


def test_a_transaction_without_an_id_is_keyed_by_its_event_id(tmp_path: Path) -> None:
    store = SqliteFeatureStore(tmp_path / "features.db")
    [r] = burst("card-1", 1, datetime.fromisoformat("2026-11-27T10:00:00+00:00"))
    del r["transaction_id"]
    for _ in range(2):  # a redelivery: the same event id, one transaction
        online_transaction(parse(created_event(r, "evt-a")), store)  # type: ignore[arg-type]
    later = {**r, "timestamp": "2026-11-27T10:30:00+00:00"}
    txn = online_transaction(parse(created_event(later, "evt-b")), store)  # type: ignore[arg-type]
    assert txn.transaction_id == "evt-b"
    assert txn.txn_count_1h == 1
