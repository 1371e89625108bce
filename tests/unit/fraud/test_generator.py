"""The synthetic transaction generator: seeded, labelled, and valid for the public contract."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from aibackend.fraud.features import FEATURES, matrix
from aibackend.fraud.generator import PATTERNS, generate_transactions, to_records
from aibackend.fraud.schema import Transaction


@pytest.fixture(scope="module")
def cols() -> dict[str, np.ndarray]:
    return generate_transactions(200_000, seed=3)


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    if a.keys() != b.keys():
        return False
    return all(
        np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") and a[k].dtype == b[k].dtype
        for k in a
    )


def test_same_seed_gives_identical_columns() -> None:
    # GIVEN two runs with the same arguments
    a = generate_transactions(5_000, seed=42)
    b = generate_transactions(5_000, seed=42)
    # THEN every column is identical, value for value
    assert _same(a, b)


def test_different_seeds_give_different_data() -> None:
    # GIVEN two runs that differ only by seed
    a = generate_transactions(5_000, seed=1)
    b = generate_transactions(5_000, seed=2)
    # THEN amounts and labels differ
    assert not np.array_equal(a["amount"], b["amount"])
    assert not np.array_equal(a["is_fraud"], b["is_fraud"])


@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_fraud_rate_follows_the_parameter(rate: float) -> None:
    # GIVEN 100k transactions at a requested fraud rate
    c = generate_transactions(100_000, seed=5, fraud_rate=rate)
    # THEN the observed share is within 15% of it (binomial noise is ~3-5%)
    assert c["is_fraud"].mean() == pytest.approx(rate, rel=0.15)


def test_every_fraud_pattern_occurs_and_labels_agree(cols: dict[str, np.ndarray]) -> None:
    fraud = cols["is_fraud"].astype(bool)
    patterns = cols["fraud_pattern"]
    # THEN legitimate rows carry no pattern and every fraud row carries one
    assert set(np.unique(patterns[~fraud])) == {"none"}
    names, counts = np.unique(patterns[fraud], return_counts=True)
    assert set(names) == set(PATTERNS)
    # AND no pattern dominates: each is at least a tenth of the fraud
    assert counts.min() >= 0.1 * fraud.sum()


def test_patterns_show_their_signature_but_overlap_with_legit(
    cols: dict[str, np.ndarray],
) -> None:
    p = cols["fraud_pattern"]
    legit = p == "none"
    # Card testing is small; new-card fraud happens on young cards; cross-border is abroad.
    assert np.median(cols["amount"][p == "card_testing"]) < np.median(cols["amount"][legit])
    assert np.median(cols["card_age_days"][p == "new_card"]) < 60
    assert cols["country_mismatch"][p == "cross_border"].all()
    # AND each signal also occurs in legitimate traffic (travellers, new customers, night shifts)
    assert cols["country_mismatch"][legit].mean() > 0.03
    assert (cols["card_age_days"][legit] < 60).mean() > 0.01
    assert np.isin(cols["hour"][legit], [0, 1, 2, 3, 4]).mean() > 0.02


def test_columns_have_the_documented_domains(cols: dict[str, np.ndarray]) -> None:
    assert (cols["amount"] > 0).all()
    assert ((cols["hour"] >= 0) & (cols["hour"] <= 23)).all()
    assert (cols["txn_count_24h"] >= cols["txn_count_1h"]).all()
    assert cols["card_present"].dtype == bool
    assert len(np.unique(cols["transaction_id"])) == len(cols["transaction_id"])
    # About 3% of 30-day averages are unknown (NaN)
    assert 0.015 < np.isnan(cols["avg_amount_30d"]).mean() < 0.06
    # AND rows are in time order (UTC instant)
    utc = cols["timestamp"] - cols["utc_offset_min"].astype("timedelta64[m]")
    assert (np.diff(utc.astype(np.int64)) >= 0).all()


def test_hour_is_the_local_hour_of_the_timestamp(cols: dict[str, np.ndarray]) -> None:
    ts = cols["timestamp"]
    from_ts = (ts - ts.astype("datetime64[D]")).astype("timedelta64[h]").astype(np.int64)
    assert np.array_equal(from_ts, cols["hour"])


def test_start_moves_the_window() -> None:
    # GIVEN a start date
    start = datetime(2025, 1, 10, tzinfo=UTC)
    c = generate_transactions(2_000, seed=1, start=start)
    # THEN every local timestamp falls on the 30 days from that date
    first = np.datetime64("2025-01-10T00:00:00")
    assert (c["timestamp"] >= first).all()
    assert (c["timestamp"] < first + np.timedelta64(30, "D")).all()


def test_records_validate_as_the_public_contract(cols: dict[str, np.ndarray]) -> None:
    # GIVEN 3000 rows as records, some with an unknown 30-day average
    records = to_records(cols, 1_000, 4_000)
    assert len(records) == 3_000
    # THEN they survive JSON and validate as Transaction
    txns = [Transaction.model_validate(r) for r in json.loads(json.dumps(records))]
    # AND labels and derived columns are not part of the payload
    assert not {"is_fraud", "fraud_pattern", "hour"} & set(records[0])
    # AND each timestamp keeps the merchant's offset, so its hour is the feature's hour
    hours = cols["hour"][1_000:4_000]
    assert [t.timestamp.hour for t in txns] == hours.tolist()
    offsets = cols["utc_offset_min"][1_000:4_000]
    assert all(
        t.timestamp.utcoffset() == timedelta(minutes=int(o))
        for t, o in zip(txns, offsets, strict=True)
    )
    # AND an unknown average becomes null
    nan = np.isnan(cols["avg_amount_30d"][1_000:4_000])
    assert nan.any()
    assert [t.avg_amount_30d is None for t in txns] == nan.tolist()


def test_feature_matrix_of_generated_columns_has_no_missing_values(
    cols: dict[str, np.ndarray],
) -> None:
    # WHEN the shared feature definition maps the generated columns
    x = matrix(cols)
    # THEN it is a complete float32 matrix with known categories
    assert x.shape == (len(cols["amount"]), len(FEATURES))
    assert x.dtype == np.float32
    assert np.isfinite(x).all()
    assert (x[:, 8] >= 0).all()
    assert (x[:, 9] >= 0).all()


@pytest.mark.slow
def test_a_million_rows_come_back_complete() -> None:
    # GIVEN a million rows requested (the pipeline benchmark's size)
    c = generate_transactions(1_000_000, seed=9)
    # THEN every column has them all
    assert {len(v) for v in c.values()} == {1_000_000}
