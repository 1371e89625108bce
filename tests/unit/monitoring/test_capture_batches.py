"""The capture consumer's batches: one object and one delta bundle per model and hour, bad
messages failed alone, and a message redelivered into another batch counted once."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aibackend.adapters.local import LocalObjectStore
from aibackend.fraud.generator import generate_transactions, to_records
from aibackend.monitoring.config import MonitorSettings
from aibackend.monitoring.ingest import (
    Rows,
    add_bundle,
    bundle_bytes,
    bundle_profiles,
    delta_rows,
    ingest,
)
from aibackend.monitoring.labels import SqliteLabelStore
from aibackend.monitoring.profiles import DeltaRows, Window, WindowKey, delta_id_for
from aibackend.monitoring.service import merge_window
from functions.monitor_capture.store import Message, batch_id, store_batch

AT = datetime(2026, 11, 27, 10, 30, tzinfo=UTC)
HOUR = WindowKey.for_time(AT, "hour")
TXNS = to_records(generate_transactions(40, seed=5))


def _message(k: int, at: datetime = AT, model: str = "fraud") -> Message:
    record: dict[str, Any] = {
        "inference_id": f"inf-{k}",
        "correlation_id": f"req-{k}",
        "model": {"name": model, "version": 1},
        "at": at.isoformat(),
        "inputs": TXNS[k] | {"card_id": "*****"},
        "output": {"score": 0.9, "decision": "decline"}
        if k % 4 == 0
        else {"score": 0.1, "decision": "approve"},
    }
    return Message(f"m-{k}", json.dumps([record]))


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.store = LocalObjectStore(tmp_path / "monitoring", bucket="monitoring")
        self.ledger = SqliteLabelStore(tmp_path / "labels.db")

    def run(self, messages: list[Message]) -> Any:
        return store_batch(
            self.store,
            messages,
            ledger=lambda model: self.ledger,
            settings=lambda model: MonitorSettings(),
        )

    def predictions(self) -> int:
        day = datetime(2026, 11, 27, tzinfo=UTC)
        return self.ledger.window(day, day.replace(day=28)).predictions


def test_a_batch_of_messages_becomes_one_records_object_and_one_bundle(tmp_path: Path) -> None:
    # GIVEN a batch of 10 capture messages, one prediction each, all in the same hour
    env = Env(tmp_path)
    batch = [_message(k) for k in range(10)]
    # WHEN the consumer stores it
    done = env.run(batch)
    # THEN nothing failed, and one records object and one delta bundle hold all ten
    assert done.failed == {}
    (stored,) = done.stored
    assert stored.messages == 10 and stored.records == 10
    assert len(env.store.get(stored.key).splitlines()) == 10
    assert stored.profile_key is not None and stored.profile_key.endswith(".bundle")
    bundle = DeltaRows.from_bytes(env.store.get(stored.profile_key))
    # AND each message keeps its own delta id (what makes redelivery safe), one row each
    assert bundle.deltas == tuple((delta_id_for(m.message_id), 1) for m in batch)
    assert env.predictions() == 10
    # AND the window merges them into ten rows
    assert merge_window(env.store, "fraud", HOUR).rows == 10


def test_a_message_redelivered_in_another_batch_is_counted_once(tmp_path: Path) -> None:
    # GIVEN messages 0-9 stored as one batch
    env = Env(tmp_path)
    env.run([_message(k) for k in range(10)])
    # WHEN message 3 and 7 come again (SQS redelivers) inside a batch with new messages 10-14
    again = env.run([_message(3), _message(7), *(_message(k) for k in range(10, 15))])
    # THEN the second batch is stored under another name
    assert again.failed == {} and again.stored[0].profile_key is not None
    # AND the window counts 15 rows, not 17 (the two deltas it had merged are skipped), and
    # the ledger 15 predictions
    window = merge_window(env.store, "fraud", HOUR)
    assert window.rows == 15 and window.duplicates == 2
    assert env.predictions() == 15


def test_the_same_batch_delivered_twice_rewrites_the_same_objects(tmp_path: Path) -> None:
    env = Env(tmp_path)
    batch = [_message(k) for k in range(5)]
    first, second = env.run(batch), env.run(list(reversed(batch)))
    assert first.stored[0].key == second.stored[0].key
    assert first.stored[0].profile_key == second.stored[0].profile_key
    assert merge_window(env.store, "fraud", HOUR).rows == 5


def test_a_bad_message_fails_alone_and_the_rest_of_the_batch_is_stored(tmp_path: Path) -> None:
    # GIVEN a batch with a message that is not JSON and one whose score is out of range
    env = Env(tmp_path)
    broken = Message("m-bad", "{not json")
    record = json.loads(_message(20).body)
    record[0]["output"]["score"] = 3.0
    out_of_range = Message("m-range", json.dumps(record))
    # WHEN it is stored
    done = env.run([_message(0), broken, _message(1), out_of_range])
    # THEN exactly those two fail, each with a reason naming it, and the others are stored
    assert set(done.failed) == {"m-bad", "m-range"}
    assert "m-bad: not JSON" in done.failed["m-bad"]
    assert "m-range" in done.failed["m-range"] and "score" in done.failed["m-range"]
    assert done.stored[0].messages == 2 and env.predictions() == 2


def test_messages_of_different_hours_go_to_their_own_hour(tmp_path: Path) -> None:
    env = Env(tmp_path)
    later = AT.replace(hour=11)
    done = env.run([_message(0), _message(1, at=later), _message(2)])
    assert sorted((s.key.split("/")[3], s.messages) for s in done.stored) == [("10", 2), ("11", 1)]
    assert merge_window(env.store, "fraud", HOUR).rows == 2


def test_a_group_whose_write_fails_fails_its_messages_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a store that refuses writes into hour 11
    env = Env(tmp_path)
    real_put = env.store.put

    def put(key: str, data: bytes, **kw: Any) -> Any:
        if "/11/" in key:
            raise OSError(28, "No space left on device")
        return real_put(key, data, **kw)

    monkeypatch.setattr(env.store, "put", put)
    # WHEN a batch spans hours 10 and 11
    done = env.run([_message(0), _message(1, at=AT.replace(hour=11))])
    # THEN the hour-11 message fails with the store's reason, and hour 10 is stored
    assert set(done.failed) == {"m-1"} and "No space left" in done.failed["m-1"]
    assert [s.messages for s in done.stored] == [1]


def _rows(k: int) -> Rows:
    done = ingest(json.loads(_message(k).body), f"m-{k}", attributes=(), positive=("decline",))
    assert done.rows is not None
    return done.rows


def test_a_truncated_profile_bundle_is_refused_with_where_it_ends() -> None:
    data = bundle_bytes([delta_rows([_rows(0)]).profile()])
    assert len(list(bundle_profiles(data))) == 1
    with pytest.raises(ValueError, match="truncated"):
        list(bundle_profiles(data[:-5]))
    with pytest.raises(ValueError, match="not a profile bundle"):
        list(bundle_profiles(b"AIBP" + data))


def test_truncated_or_corrupt_delta_rows_are_refused_with_what_is_wrong() -> None:
    data = delta_rows([_rows(0), _rows(1)]).to_bytes()
    assert DeltaRows.from_bytes(data).rows == 2
    with pytest.raises(
        ValueError,
        match="truncated: 107 bytes of numbers where 2 rows of 7 numeric columns take 112",
    ):
        DeltaRows.from_bytes(data[:-5])
    with pytest.raises(ValueError, match="corrupt header"):
        DeltaRows.from_bytes(data[:40])
    with pytest.raises(ValueError, match="not delta rows"):
        DeltaRows.from_bytes(b"AIBP" + data)


def test_delta_rows_profile_exactly_as_one_profile_per_message_did() -> None:
    # GIVEN 30 messages (sketches below k are exact: the two paths must agree to the last bit
    # on counts and quantiles, and within float rounding on moments)
    rows = [_rows(k) for k in range(30)]
    # WHEN the window merges them as rows (one bundle, through bytes) or as one profile each
    as_rows = Window(key=HOUR)
    assert add_bundle(as_rows, delta_rows(rows).to_bytes()) == 30
    as_profiles = Window(key=HOUR)
    assert add_bundle(as_profiles, bundle_bytes([delta_rows([r]).profile() for r in rows])) == 30
    # THEN both windows hold the same 30 deltas and the same statistics
    a, b = as_rows.profile, as_profiles.profile
    assert a is not None and b is not None
    assert a.delta_ids == b.delta_ids and a.rows == b.rows == 30
    ranks = np.linspace(0, 1, 11)
    for name in a.schema.numeric:
        x, y = a.numeric(name), b.numeric(name)
        assert (x.count, x.nulls, x.min, x.max) == (y.count, y.nulls, y.min, y.max)
        assert x.mean == pytest.approx(y.mean) and x.m2 == pytest.approx(y.m2)
        np.testing.assert_array_equal(x.sketch.quantiles(ranks), y.sketch.quantiles(ranks))
    for name in a.schema.categorical:
        assert a.categorical(name).counts() == b.categorical(name).counts()
    assert a.predicted is not None and b.predicted is not None
    assert a.predicted.counts() == b.predicted.counts() == {"decline": 8.0, "approve": 22.0}


def test_a_message_in_an_old_profile_bundle_and_a_new_rows_bundle_is_counted_once() -> None:
    # GIVEN an hour with a bundle written before the consumer wrote rows (messages 0-4)
    window = Window(key=HOUR)
    add_bundle(window, bundle_bytes([delta_rows([_rows(k)]).profile() for k in range(5)]))
    # WHEN a rows bundle redelivers messages 3 and 4 next to new ones 5-7
    new = add_bundle(window, delta_rows([_rows(k) for k in range(3, 8)]).to_bytes())
    # THEN only the three new messages are merged: 8 rows, two duplicates
    assert new == 3 and window.rows == 8 and window.duplicates == 2
    # AND the same rows bundle again adds nothing
    assert add_bundle(window, delta_rows([_rows(k) for k in range(3, 8)]).to_bytes()) == 0
    assert window.rows == 8 and window.duplicates == 7


def test_the_same_message_twice_in_one_batch_is_stored_once(tmp_path: Path) -> None:
    env = Env(tmp_path)
    done = env.run([_message(0), _message(1), _message(0)])
    assert done.failed == {} and done.stored[0].messages == 2
    assert merge_window(env.store, "fraud", HOUR).rows == 2 and env.predictions() == 2


def test_batch_ids_name_one_message_by_its_id_and_several_by_their_sorted_ids() -> None:
    assert batch_id(["m-1"]) == "m-1"
    assert batch_id(["m-1", "m-2"]) == batch_id(["m-2", "m-1"]) != batch_id(["m-1", "m-3"])


def test_a_window_adds_ids_to_one_set_instead_of_copying_them_per_bundle() -> None:
    # GIVEN a window that merged a bundle (an hour at 300 requests/s is ~10,000 bundles of
    # 100 one-row deltas; copying every merged id per bundle made merging quadratic: 200,000
    # deltas took 8.5 s, now 0.23 s)
    window = Window(key=HOUR)
    window.add_rows(delta_rows([_rows(k) for k in range(5)]))
    ids = window.delta_ids
    # WHEN more bundles, and a profile, are merged
    window.add_rows(delta_rows([_rows(k) for k in range(5, 10)]))
    window.add(delta_rows([_rows(10)]).profile())
    # THEN the same set holds every id, and a redelivered delta is still recognized
    assert window.delta_ids is ids and len(ids) == 11
    assert window.add_rows(delta_rows([_rows(3)])) == 0 and window.rows == 11
