"""Profiles of inference batches: exact counts, sketch accuracy, compact bytes, merging in any
order with duplicates, and hour/day windows."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from aibackend.fraud.features import FEATURES, matrix
from aibackend.fraud.generator import generate_transactions
from aibackend.monitoring.confusion import ConfusionTable
from aibackend.monitoring.profiles import (
    UNKNOWN_CATEGORY,
    Profile,
    ProfileAccumulator,
    ProfileSchema,
    Window,
    WindowKey,
    delta_id_for,
    profile_matrix,
)

SCHEMA = ProfileSchema(numeric=("amount", "age"), categorical=("region", "present"))


def _frame(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3.0, 1.0, n)
    amount[rng.random(n) < 0.1] = np.nan
    region = rng.choice(["north", "south", "east"], n).astype(object)
    region[rng.random(n) < 0.05] = None
    return {
        "amount": amount,
        "age": rng.integers(0, 5000, n).astype(np.float64),
        "region": region,
        "present": rng.random(n) < 0.3,
    }


def _deltas(count: int, rows: int) -> tuple[list[Profile], dict[str, np.ndarray]]:
    frames = [_frame(rows, seed) for seed in range(count)]
    scores = [np.random.default_rng(100 + i).random(rows) for i in range(count)]
    deltas = [
        Profile.build(f, SCHEMA, delta_id=f"d{i}", scores=s, predicted=s >= 0.9)
        for i, (f, s) in enumerate(zip(frames, scores, strict=True))
    ]
    union = {k: np.concatenate([f[k] for f in frames]) for k in frames[0]}
    union["score"] = np.concatenate(scores)
    return deltas, union


def test_build_counts_rows_nulls_and_categories_exactly() -> None:
    # GIVEN a batch with 10% missing amounts, 5% missing regions and a boolean column
    f = _frame(5_000, seed=1)
    # WHEN it is profiled
    p = Profile.build(f, SCHEMA, delta_id="b1")
    # THEN rows, nulls, counts and moments are exact
    amount = p.numeric("amount")
    assert p.rows == 5_000
    assert amount.nulls == int(np.isnan(f["amount"]).sum())
    assert amount.count + amount.nulls == 5_000
    assert amount.mean == pytest.approx(np.nanmean(f["amount"]), rel=1e-12)
    assert amount.std == pytest.approx(np.nanstd(f["amount"]), rel=1e-9)
    region = p.categorical("region")
    names, counts = np.unique(f["region"][f["region"] != None], return_counts=True)  # noqa: E711
    assert region.counts() == dict(zip(names.tolist(), counts.astype(float).tolist(), strict=True))
    assert region.nulls == int((f["region"] == None).sum())  # noqa: E711
    assert p.categorical("present").counts() == {
        "true": float(f["present"].sum()),
        "false": float((~f["present"]).sum()),
    }


def test_quantiles_are_within_the_sketchs_stated_rank_error() -> None:
    # GIVEN 100k values profiled with the default KLL sketch (k = 1000)
    values = np.random.default_rng(2).lognormal(3.0, 1.0, 100_000)
    p = Profile.build({"amount": values}, ProfileSchema(numeric=("amount",)), delta_id="q")
    sketch = p.numeric("amount").sketch
    ranks = np.linspace(0.01, 0.99, 99)
    # WHEN quantiles are read back
    estimates = sketch.quantiles(ranks)
    # THEN each estimate's true rank is within epsilon of the asked rank
    true_ranks = np.searchsorted(np.sort(values), estimates, side="right") / values.size
    assert 0 < sketch.rank_error < 0.02
    assert np.max(np.abs(true_ranks - ranks)) <= sketch.rank_error


def test_bytes_round_trip_keeps_everything_and_stays_compact() -> None:
    # GIVEN a profile with prediction columns and confusion counts
    f = _frame(20_000, seed=3)
    s = np.random.default_rng(3).random(20_000)
    p = Profile.build(f, SCHEMA, delta_id="rt", scores=s, predicted=s > 0.5)
    y = np.random.default_rng(4).random(20_000) < 0.5
    p = p.with_confusion(ConfusionTable.from_arrays(y, s > 0.5, {"region": f["region"]}))
    # WHEN it is serialized and read back
    blob = p.to_bytes()
    q = Profile.from_bytes(blob)
    # THEN it is the same profile, in tens of KB per column (not proportional to the rows)
    assert q.to_bytes() == blob
    assert q.rows == p.rows and q.delta_ids == p.delta_ids
    assert q.numeric("amount").sketch.quantiles(np.array([0.5])) == pytest.approx(
        p.numeric("amount").sketch.quantiles(np.array([0.5]))
    )
    assert q.confusion == p.confusion
    # (three numeric columns at ~23 KB each, k = 1000; the raw floats alone would be 480 KB)
    assert len(blob) < 3 * 24_000 + 4_000
    with pytest.raises(ValueError, match="not a format-1 profile"):
        Profile.from_bytes(b"XXXX" + blob[4:])


def test_merging_in_any_order_with_duplicates_gives_exact_counts_and_bounded_quantiles() -> None:
    # GIVEN 24 hourly deltas, delivered shuffled, some of them twice
    deltas, union = _deltas(24, 1_000)
    rng = random.Random(7)
    results = []
    for _ in range(3):
        delivered = deltas + rng.sample(deltas, 6)
        rng.shuffle(delivered)
        # WHEN each delivery order is merged into a day window
        day = Window(WindowKey.for_time(datetime(2024, 3, 1, 5, tzinfo=UTC), "day"))
        new = day.add_all(delivered)
        assert new == 24 and day.duplicates == 6
        assert day.profile is not None
        results.append(day.profile)
    # THEN counts are exact and equal whatever the order
    for p in results:
        assert p.rows == 24_000
        assert p.numeric("amount").nulls == int(np.isnan(union["amount"]).sum())
        assert p.categorical("region").counts() == results[0].categorical("region").counts()
        assert p.numeric("amount").mean == pytest.approx(np.nanmean(union["amount"]), rel=1e-9)
    # AND quantiles of every order are within the sketch's error of the exact ones
    ranks = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
    for p in results:
        sk = p.numeric("amount").sketch
        ok = np.sort(union["amount"][~np.isnan(union["amount"])])
        true_ranks = np.searchsorted(ok, sk.quantiles(ranks), side="right") / ok.size
        assert np.max(np.abs(true_ranks - ranks)) <= sk.rank_error
        score = results[0].score
        assert p.score is not None and score is not None and p.score.count == 24_000


def test_merge_refuses_overlapping_and_mismatched_profiles() -> None:
    # GIVEN two deltas and their merge
    (a, b), _ = _deltas(2, 100)
    ab = a.merge(b)
    # THEN merging a delta into a profile that already holds it is refused (double count)
    with pytest.raises(ValueError, match="share 1 delta id"):
        ab.merge(a)
    # AND a window refuses a merged profile that is only partly new
    w = Window(WindowKey.for_time(datetime(2024, 3, 1, tzinfo=UTC), "hour"))
    w.add(a)
    with pytest.raises(ValueError, match="add the original deltas"):
        w.add(ab)
    # AND profiles of different schemas do not merge
    other = Profile.build({"amount": [1.0]}, ProfileSchema(numeric=("amount",)), delta_id="x")
    with pytest.raises(ValueError, match="different schemas"):
        a.merge(other)


def test_build_explains_missing_and_mismatched_columns() -> None:
    # GIVEN frames lacking a declared column, or with columns of different lengths
    f = _frame(10, seed=0)
    with pytest.raises(ValueError, match=r"lacks the schema's columns \['age'\]"):
        Profile.build({k: v for k, v in f.items() if k != "age"}, SCHEMA, delta_id="m")
    with pytest.raises(ValueError, match="differ in length"):
        Profile.build({**f, "age": f["age"][:5]}, SCHEMA, delta_id="m")
    with pytest.raises(ValueError, match="'region' is declared numeric"):
        Profile.build(f, ProfileSchema(numeric=("region",)), delta_id="m")


def test_high_cardinality_categorical_switches_to_a_frequent_items_sketch() -> None:
    # GIVEN a column with 5,000 distinct ids and one value that is 20% of the rows
    rng = np.random.default_rng(5)
    ids = np.array([f"id-{i}" for i in rng.integers(0, 5_000, 40_000)], dtype=object)
    ids[:10_000] = "hot"
    schema = ProfileSchema(categorical=("merchant",), max_exact=1_000)
    # WHEN it is profiled and serialized
    p = Profile.from_bytes(Profile.build({"merchant": ids}, schema, delta_id="hc").to_bytes())
    col = p.categorical("merchant")
    counts = col.counts()
    # THEN it is sketched: totals exact, the heavy hitter within the stated error
    assert not col.freq.exact
    assert col.count == 40_000
    true_hot = int((ids == "hot").sum())
    assert abs(counts["hot"] - true_hot) <= col.freq.error
    assert sum(counts.values()) == pytest.approx(40_000)


def test_profile_matrix_decodes_the_training_matrix_like_the_baseline() -> None:
    # GIVEN the fraud training matrix (categorical codes, 0/1 booleans), with one missing
    # and one out-of-range merchant code
    cols = generate_transactions(3_000, seed=11)
    x = matrix(cols).astype(np.float64)
    j = [f.name for f in FEATURES].index("merchant_category")
    truth = cols["merchant_category"][2:]
    x[0, j], x[1, j] = np.nan, 99.0
    # WHEN it is profiled as the training baseline
    p = profile_matrix(x, FEATURES, delta_id=delta_id_for("baseline", "fraud", "1"))
    # THEN numeric features are sketched, booleans and categories counted by name
    assert set(p.schema.numeric) == {f.name for f in FEATURES if f.kind == "numeric"}
    merchant = p.categorical("merchant_category")
    names, counts = np.unique(truth, return_counts=True)
    expected = dict(zip(names.tolist(), counts.astype(float).tolist(), strict=True))
    assert merchant.counts() == {**expected, UNKNOWN_CATEGORY: 1.0}
    assert merchant.nulls == 1
    assert p.categorical("card_present").counts()["true"] == float(cols["card_present"].sum())
    assert p.numeric("amount_eur").count == 3_000


def test_delta_ids_are_stable_for_the_same_batch() -> None:
    assert delta_id_for("msg-1", "0") == delta_id_for("msg-1", "0")
    assert delta_id_for("msg-1", "0") != delta_id_for("msg-1", "1")
    with pytest.raises(ValueError, match="delta_id"):
        Profile.build(_frame(3, 0), SCHEMA, delta_id="")


def test_window_keys_align_to_utc_hours_and_days_and_roll_up() -> None:
    # GIVEN a time with an offset
    t = datetime(2024, 3, 1, 14, 35, tzinfo=UTC) + timedelta(seconds=7)
    hour = WindowKey.for_time(t, "hour")
    day = WindowKey.for_time(t, "day")
    # THEN the windows are UTC-aligned and contain the time
    assert hour.start == datetime(2024, 3, 1, 14, tzinfo=UTC) and hour.contains(t)
    assert day.start == datetime(2024, 3, 1, tzinfo=UTC) and day.end - day.start == timedelta(
        days=1
    )
    # AND hours roll up into their day, counting each delta once
    deltas, _ = _deltas(3, 50)
    hours = [Window(WindowKey(day.start + timedelta(hours=i), "hour")) for i in range(3)]
    for w, d in zip(hours, deltas, strict=True):
        w.add(d)
    rolled = Window.rollup(day, hours)
    assert rolled.rows == 150 and len(rolled.delta_ids) == 3
    with pytest.raises(ValueError, match="not inside"):
        Window.rollup(hour, hours)


def test_an_accumulating_profile_equals_the_profile_of_the_whole_batch() -> None:
    # GIVEN a per-container profile that receives single rows and small batches
    f = _frame(150, seed=12)  # below k = 1000: the sketches are exact
    acc = Profile.empty(SCHEMA, delta_id="container-1", scores=False, predicted=False)
    for start, stop in ((0, 1), (1, 2), (2, 100), (100, 150)):
        acc.add({k: v[start:stop] for k, v in f.items()})
    whole = Profile.build(f, SCHEMA, delta_id="whole")
    # THEN it holds the same counts, moments and (exact, below k) quantiles
    assert acc.rows == whole.rows == 150
    assert acc.categorical("region").counts() == whole.categorical("region").counts()
    assert acc.numeric("amount").mean == pytest.approx(whole.numeric("amount").mean, rel=1e-12)
    ranks = np.array([0.1, 0.5, 0.9])
    assert np.array_equal(
        acc.numeric("age").sketch.quantiles(ranks), whole.numeric("age").sketch.quantiles(ranks)
    )
    # AND a batch with prediction columns the profile does not have is refused
    with pytest.raises(ValueError, match="same prediction columns"):
        acc.add(f, scores=np.zeros(150))


def test_the_accumulator_profiles_single_predictions_in_batches() -> None:
    # GIVEN 2,500 predictions appended one by one (as JSON-like dicts) with a flush every 1,000
    f = _frame(2_500, seed=13)
    scores = np.random.default_rng(13).random(2_500)
    acc = ProfileAccumulator(SCHEMA, source="log-stream-1", flush_rows=1_000)
    for i in range(2_500):
        row = {
            k: (None if v[i] is None else v[i].item() if hasattr(v[i], "item") else v[i])
            for k, v in f.items()
        }
        acc.append(row, score=float(scores[i]), predicted=bool(scores[i] > 0.9))
    assert acc.rows == 2_500
    # WHEN the delta is taken
    delta = acc.take()
    whole = Profile.build(f, SCHEMA, delta_id="whole", scores=scores, predicted=scores > 0.9)
    # THEN it counts exactly what a whole-batch profile counts, booleans spelled alike
    assert delta is not None and delta.rows == 2_500
    for name in ("region", "present"):
        assert delta.categorical(name).counts() == whole.categorical(name).counts()
        assert delta.categorical(name).nulls == whole.categorical(name).nulls
    assert delta.predicted is not None and whole.predicted is not None
    assert delta.predicted.counts() == whole.predicted.counts()
    assert delta.numeric("amount").nulls == whole.numeric("amount").nulls
    # AND the next delta has a new id and starts empty
    acc.append({"amount": 1.0}, score=0.1, predicted=False)
    nxt = acc.take()
    assert nxt is not None and nxt.rows == 1 and nxt.delta_ids.isdisjoint(delta.delta_ids)
    assert nxt.categorical("region").nulls == 1
    assert acc.take() is None
