"""Window features and the online window table: one definition, order-independent, idempotent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aibackend.iot.devices import DEVICE_TYPES
from aibackend.iot.store import DynamoReadingStore, SqliteReadingStore
from aibackend.iot.window import (
    WINDOW_READINGS,
    WINDOW_SPAN_S,
    features,
    select,
    series_features,
    window_stats,
)


def test_window_stats_of_a_ramp_give_its_slope_per_minute_and_spread() -> None:
    # GIVEN readings rising 0.5 per 10 s (3 per minute)
    times = [10.0 * i for i in range(7)]
    values = [20 + 0.5 * i for i in range(7)]
    # WHEN the window's statistics are taken
    s = window_stats(times, values)
    # THEN slope, mean, std and span are the ramp's
    assert s.slope_per_min == pytest.approx(3.0)
    assert s.mean == pytest.approx(21.5)
    assert s.std == pytest.approx(float(np.std(values)))
    assert (s.readings, s.span_s) == (7, 60.0)


def test_a_single_reading_window_has_zero_slope_and_spread() -> None:
    s = window_stats([5.0], [21.0])
    assert (s.slope_per_min, s.std, s.span_s) == (0.0, 0.0, 0.0)


def test_select_keeps_the_last_readings_within_the_span_up_to_the_reading() -> None:
    # GIVEN a history with a reading later than the scored one and one too old
    history = [(float(t), float(t)) for t in range(0, 1_000, 10)]
    at = 700.0
    # WHEN the window of the reading at 700 s is selected
    times, _ = select(history, at)
    # THEN it holds the last WINDOW_READINGS readings in (700 - span, 700], nothing later
    assert times[-1] == at
    assert len(times) == WINDOW_READINGS
    assert all(at - WINDOW_SPAN_S < t <= at for t in times)


def test_features_scale_by_the_device_types_spread_so_types_are_comparable() -> None:
    stats = window_stats([0.0, 10.0], [21.0, 21.0])
    t = DEVICE_TYPES["thermostat"]
    row = features("thermostat", 21.0 + t.noise * 8, stats)
    assert row.dtype == np.float32 and row.shape == (1, 5)
    assert row[0, 1] == pytest.approx(8.0, rel=1e-4)  # the jump, in noise sds


def test_series_features_match_the_served_features_reading_by_reading() -> None:
    # GIVEN a device's series / WHEN featurised as training does, and one reading as served
    rng = np.random.default_rng(1)
    times = np.arange(50) * 10.0
    values = 21 + rng.normal(0, 0.15, 50)
    batch = series_features("thermostat", times, values)
    history = list(zip(times.tolist(), values.tolist(), strict=True))
    ts, vs = select(history, times[30])
    served = features("thermostat", float(values[30]), window_stats(ts, vs))
    # THEN both give the same row
    np.testing.assert_allclose(batch[30], served[0], rtol=1e-6)


class FakeDynamo:
    """update_item (SET by name) and batch_get_item of the DynamoDB client, in memory."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def update_item(self, **kw: Any) -> None:
        item = self.items.setdefault(kw["Key"]["id"]["S"], {"id": kw["Key"]["id"]})
        assert kw["UpdateExpression"] == "SET #r = :v, #e = :e"
        names, values = kw["ExpressionAttributeNames"], kw["ExpressionAttributeValues"]
        item[names["#r"]] = values[":v"]
        item[names["#e"]] = values[":e"]

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        ((table, req),) = RequestItems.items()
        keys = [k["id"]["S"] for k in req["Keys"]]
        got = [json.loads(json.dumps(self.items[k])) for k in keys if k in self.items]
        return {"Responses": {table: got}}


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        return SqliteReadingStore(tmp_path / "iot.db")
    return DynamoReadingStore("t", client=FakeDynamo())


def test_the_window_is_the_same_whatever_the_arrival_order_and_redeliveries(store: Any) -> None:
    # GIVEN 30 readings 10 s apart that cross an hour boundary (two DynamoDB items)
    start = 1_795_000_000.0 - 150
    readings = [(start + 10 * i, 20.0 + i) for i in range(30)]
    in_order = {at: store.record_and_window("d1", at, v) for at, v in readings[:25]}
    # WHEN the last reading arrives twice and a late copy of an earlier one comes again
    last = store.record_and_window("d1", *readings[25])
    again = store.record_and_window("d1", *readings[25])
    late = store.record_and_window("d1", *readings[10])
    # THEN redelivery changes nothing and the late reading sees only readings before it
    assert again == last
    assert late == in_order[readings[10][0]]
    assert len(last) == WINDOW_READINGS and last[-1] == readings[25]
    assert [r[0] for r in last] == sorted(r[0] for r in last)


def test_windows_are_per_device(store: Any) -> None:
    store.record_and_window("a", 100.0, 1.0)
    assert store.record_and_window("b", 110.0, 2.0) == [(110.0, 2.0)]


def test_a_batch_gets_the_windows_its_readings_would_get_one_at_a_time(
    store: Any, tmp_path: Path
) -> None:
    # GIVEN 30 readings of two devices, 10 s apart, one of them twice
    readings = [(f"d{i % 2}", 1_000.0 + 10 * i, float(i)) for i in range(30)]
    readings.append(readings[7])
    # WHEN they are stored in batches of 10, out of time order within each batch
    batched = []
    for start in range(0, len(readings), 10):
        chunk = readings[start : start + 10][::-1]
        batched += list(zip(chunk, store.record_and_windows(chunk), strict=True))
    # THEN each window is the one a store fed the same readings in time order gives it
    one_by_one = SqliteReadingStore(tmp_path / "one-by-one.db")
    expected = {
        r: one_by_one.record_and_window(*r) for r in sorted(set(readings), key=lambda r: r[1])
    }
    for r, window in batched:
        assert window == expected[r], r
    assert store.record_and_windows([]) == []
