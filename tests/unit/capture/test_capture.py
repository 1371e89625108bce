"""Inference capture: declared per model, sampled by inference id, masked, sent in batches."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aibackend.adapters.local import LocalObjectStore
from aibackend.capture import (
    ENV,
    QUEUE,
    Capture,
    CaptureSettings,
    capture_env,
    load_capture,
    sampled,
)
from aibackend.catalog import load_catalog
from aibackend.errors import ConfigError
from aibackend.local.lifecycle import ExpirationRule, expire


class FakeQueue:
    name = QUEUE

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def send_batch(self, bodies: Sequence[str], *, delay_s: int | None = None) -> list[str]:
        assert len(bodies) <= 10
        self.batches.append(list(bodies))
        return [str(i) for i in range(len(bodies))]


def test_sampling_is_a_stable_function_of_the_inference_id_at_the_declared_rate() -> None:
    # GIVEN 20,000 inference ids and a rate of 0.3
    ids = [f"inf-{i}" for i in range(20_000)]
    # WHEN each is sampled twice
    first = [sampled(i, 0.3) for i in ids]
    # THEN the decision repeats, and the share is 0.3 within 4 standard errors
    assert first == [sampled(i, 0.3) for i in ids]
    share = sum(first) / len(ids)
    assert abs(share - 0.3) < 4 * (0.3 * 0.7 / len(ids)) ** 0.5
    # AND the ends are exact
    assert all(sampled(i, 1.0) for i in ids[:100]) and not any(sampled(i, 0.0) for i in ids[:100])


def test_records_carry_ids_model_version_and_masked_inputs() -> None:
    # GIVEN capture of fraud with card_id masked
    queue = FakeQueue()
    cap = Capture("fraud", CaptureSettings(rate=1.0, mask=("card_id",)), queue)
    items = [
        (f"inf-{i}", {"card_id": "c-42", "amount": 10.0 + i}, {"score": 0.1}) for i in range(23)
    ]
    # WHEN a batch of 23 predictions is captured
    sent = cap.send(7, items, "req-1")
    # THEN 23 records went out in messages of at most 10 records, one send_batch call
    assert sent == 23
    (batch,) = queue.batches
    records = [r for body in batch for r in json.loads(body)]
    assert [len(json.loads(b)) for b in batch] == [10, 10, 3]
    assert [r["inference_id"] for r in records] == [f"inf-{i}" for i in range(23)]
    # AND each names the model version and correlation id, with the card id erased
    r = records[5]
    assert r["model"] == {"name": "fraud", "version": 7} and r["correlation_id"] == "req-1"
    assert r["inputs"] == {"card_id": "*****", "amount": 15.0}
    assert r["output"] == {"score": 0.1}
    datetime.fromisoformat(r["at"])


def test_capture_is_off_for_a_model_the_settings_do_not_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN AIB_CAPTURE naming fraud only
    monkeypatch.setenv(ENV, capture_env({"fraud": CaptureSettings(rate=0.5)}))
    # THEN sentiment's capture is off and sends nothing; fraud's is on
    off = Capture.from_env("sentiment")
    assert not off.enabled and off.send(1, [("i", {}, {})], None) == 0
    assert Capture.from_env("fraud", queue=FakeQueue()).enabled  # type: ignore[arg-type]


def write_catalog(root: Path, monitoring: str, consumer: bool = True) -> Path:
    functions = root / "functions"
    for name, toml in {
        "scorer": 'handler = "handler.handler"\nmodels = ["fraud"]\n',
        "other": 'handler = "handler.handler"\n',
        "batch": 'handler = "handler.handler"\nmodels = ["fraud"]\ncapture = false\n',
        **({"monitor_capture": '[[queues]]\nqueue = "inference-capture"\n'} if consumer else {}),
    }.items():
        d = functions / name
        d.mkdir(parents=True)
        (d / "function.toml").write_text(toml)
        (d / "handler.py").write_text("def handler(e, c):\n    return {}\n")
    (functions / "monitoring.toml").write_text(monitoring)
    return functions


def test_a_function_serving_a_captured_model_may_send_to_the_capture_queue(
    tmp_path: Path,
) -> None:
    # GIVEN capture declared for fraud
    functions = write_catalog(
        tmp_path, "[capture.fraud]\nrate = 0.5\nmask = ['card_id']\nretention_days = 7\n"
    )
    # WHEN the catalog loads
    cat = load_catalog(functions)
    # THEN the function serving fraud may write to the capture queue; the one serving no
    # captured model may not, nor the one serving fraud that declares `capture = false`
    scorer, other, batch = cat.get("scorer"), cat.get("other"), cat.get("batch")
    assert scorer.resources.queues == {QUEUE: "write"}
    assert other.resources.queues == {} == batch.resources.queues
    # AND the settings, as the platform hands them to functions, name the model's choices
    assert json.loads(capture_env(cat.capture)) == {
        "fraud": {"rate": 0.5, "mask": ["card_id"], "retention_days": 7}
    }


@pytest.mark.parametrize(
    ("monitoring", "consumer", "message"),
    [
        ("[capture.fraud]\nrate = 2\n", True, "capture.fraud.rate"),
        ("[capture.fraud]\nsample = 1\n", True, "capture.fraud.sample"),
        ("[capture.churn]\nrate = 1\n", True, "no function serves model(s) 'churn'"),
        ("[capture.fraud]\nrate = 1\n", False, "no function consumes the 'inference-capture'"),
        ("[capture.fraud\n", True, "not valid TOML"),
    ],
)
def test_bad_monitoring_settings_are_refused_with_where_and_why(
    tmp_path: Path, monitoring: str, consumer: bool, message: str
) -> None:
    functions = write_catalog(tmp_path, monitoring, consumer)
    with pytest.raises(ConfigError, match=r"monitoring\.toml") as e:
        load_catalog(functions)
    assert message in str(e.value)


def test_no_monitoring_file_means_no_capture(tmp_path: Path) -> None:
    assert load_capture(tmp_path) == {}


def test_expiration_deletes_only_objects_older_than_the_rule(tmp_path: Path) -> None:
    # GIVEN captured objects of fraud written now, and one written 8 days ago; one of sentiment
    store = LocalObjectStore(tmp_path / "monitoring", bucket="monitoring")
    for key in ("capture/fraud/a.jsonl", "capture/fraud/old.jsonl", "capture/sentiment/b.jsonl"):
        store.put(key, b"{}\n")
    old = (datetime.now(UTC) - timedelta(days=8)).timestamp()
    path = tmp_path / "monitoring" / "capture" / "fraud" / "old.jsonl"
    os.utime(path, (old, old))
    # WHEN a 7-day rule on capture/fraud/ is applied
    n = expire(store, ExpirationRule("monitoring", "capture/fraud/", 7))
    # THEN only the old fraud object is gone
    assert n == 1
    assert sorted(o.key for o in store.list("capture/")) == [
        "capture/fraud/a.jsonl",
        "capture/sentiment/b.jsonl",
    ]
