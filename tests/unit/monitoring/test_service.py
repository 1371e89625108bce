"""The monitor on fakes: baselines missing or present, findings published once per window,
windows named or scheduled, capture records ingested into deltas and ledger rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from aibackend.adapters.local import LocalObjectStore
from aibackend.fraud.generator import generate_transactions, to_records
from aibackend.monitoring.config import MonitorSettings
from aibackend.monitoring.ingest import CaptureRecordError, delta_rows, ingest, profile_key
from aibackend.monitoring.labels import CapturedPrediction, Label, SqliteLabelStore
from aibackend.monitoring.profiles import WindowKey, delta_id_for
from aibackend.monitoring.service import (
    Ports,
    metric_values,
    monitor_window,
    parse_window,
    scheduled_windows,
)
from aibackend.ports import PutEvent, PutEventsResult

AT = datetime(2026, 11, 27, 10, 30, tzinfo=UTC)
HOUR = WindowKey.for_time(AT, "hour")


class FakeBus:
    def __init__(self) -> None:
        self.events: list[PutEvent] = []

    def put_events(self, entries: list[PutEvent]) -> PutEventsResult:
        self.events.extend(entries)
        return PutEventsResult(event_ids=tuple(f"ev-{len(self.events)}" for _ in entries))


class FakeRegistry:
    def __init__(self, version: int | None) -> None:
        self.version = version

    def production(self, name: str) -> Any:
        if self.version is None:
            return None
        return SimpleNamespace(version=self.version, prefix=f"{name}/{self.version}/")


def _ports(tmp_path: Path, version: int | None) -> tuple[Ports, FakeBus]:
    bus = FakeBus()
    ports = Ports(
        store=LocalObjectStore(tmp_path / "monitoring", bucket="monitoring"),
        models=LocalObjectStore(tmp_path / "models", bucket="models"),
        registry=FakeRegistry(version),  # type: ignore[arg-type]
        bus=bus,  # type: ignore[arg-type]
    )
    return ports, bus


def _ledger_with_labels(tmp_path: Path, auc_inverted: bool) -> SqliteLabelStore:
    """300 predictions at AT, all labelled; scores rank the labels right or backwards."""
    rng = np.random.default_rng(1)
    y = rng.random(300) < 0.3
    s = np.where(y, 0.8, 0.2) + rng.normal(0, 0.05, 300)
    s = np.clip(1 - s if auc_inverted else s, 0, 1)
    ledger = SqliteLabelStore(tmp_path / "labels.db")
    ledger.put_predictions(
        [
            CapturedPrediction(
                inference_id=f"i{k}", time=AT, score=float(s[k]), predicted=int(s[k] >= 0.5)
            )
            for k in range(300)
        ]
    )
    ledger.put_labels(
        [Label(inference_id=f"i{k}", label=int(y[k]), received_at=AT) for k in range(300)]
    )
    return ledger


def _run(ports: Ports, ledger: SqliteLabelStore, cause: str) -> Any:
    return monitor_window(ports, ledger, "fraud", HOUR, MonitorSettings(), cause=cause, now=AT)


def test_a_version_without_a_baseline_profile_is_reported_with_how_to_fix_it(
    tmp_path: Path,
) -> None:
    # GIVEN fraud v4 in production without profile.bin, and a window of captured deltas
    ports, bus = _ports(tmp_path, version=4)
    done = ingest(_records(50), "m-1", attributes=("region",), positive=("decline",))
    assert done.rows is not None
    ports.store.put(profile_key("fraud", AT, "m-1"), delta_rows([done.rows]).profile().to_bytes())
    # WHEN the monitor judges the window
    report = _run(ports, _ledger_with_labels(tmp_path, auc_inverted=False), "run")
    # THEN it says drift was not tested and how to fix that, and still reports accuracy
    assert report.drift is None and report.rows == 50
    assert report.baseline.version == 4 and not report.baseline.profile
    assert "retrain with `aib train fraud`" in (report.baseline.problem or "")
    assert report.accuracy.labelled == 300
    assert bus.events == []


def test_no_production_version_is_reported_not_raised(tmp_path: Path) -> None:
    ports, bus = _ports(tmp_path, version=None)
    report = _run(ports, _ledger_with_labels(tmp_path, auc_inverted=True), "run")
    assert report.baseline.version is None and "no production version" in str(
        report.baseline.problem
    )
    assert report.findings == [] and bus.events == []


def test_a_degraded_window_publishes_model_performance_degraded_once(tmp_path: Path) -> None:
    # GIVEN a window whose 300 labelled scores rank the labels backwards (AUC near 0)
    ports, bus = _ports(tmp_path, version=2)
    ledger = _ledger_with_labels(tmp_path, auc_inverted=True)
    # WHEN the monitor judges it twice
    first = _run(ports, ledger, "run-1")
    second = _run(ports, ledger, "run-2")
    # THEN one event carries the test, statistic, threshold, window and baseline version
    assert [e.detail_type for e in bus.events] == ["Model Performance Degraded"]
    d = bus.events[0].detail
    assert d["test"] == "roc_auc" and d["threshold"] == 0.85
    assert d["statistic"] == pytest.approx(first.accuracy.roc_auc) and d["statistic"] < 0.1
    assert d["baseline_version"] == 2 and d["labelled"] == 300
    assert d["window"]["span"] == "hour" and d["caused_by"] == "run-1"
    assert [f["new"] for f in first.findings] == [True]
    assert [f["new"] for f in second.findings] == [False]
    # AND the report is stored where the dashboard reads it
    stored = json.loads(ports.store.get("reports/fraud/hour-2026-11-27T10.json"))
    assert stored["accuracy"]["labelled"] == 300
    # AND its EMF metrics hold what the window defines
    m = metric_values(first)
    assert m["RocAuc"] == first.accuracy.roc_auc and m["LabelCompleteness"] == 1.0
    assert "DriftShare" not in m


def test_windows_by_name_and_by_schedule() -> None:
    assert parse_window("hour", AT) == HOUR
    assert parse_window("day:2026-11-26", AT) == WindowKey(
        datetime(2026, 11, 26, tzinfo=UTC), "day"
    )
    assert parse_window("hour:2026-11-26T23", AT).start == datetime(2026, 11, 26, 23, tzinfo=UTC)
    for bad in ("week", "hour:2026-11-26", "day:2026-11-26T10"):
        with pytest.raises(ValueError, match="window"):
            parse_window(bad, AT)
    # an hourly run at 00:05 judges 23:00-24:00 and that (previous) day
    hour, day = scheduled_windows(datetime(2026, 11, 27, 0, 5, tzinfo=UTC))
    assert hour == WindowKey(datetime(2026, 11, 26, 23, tzinfo=UTC), "hour")
    assert day == WindowKey(datetime(2026, 11, 26, tzinfo=UTC), "day")


def _records(n: int) -> list[dict[str, Any]]:
    txns = to_records(generate_transactions(n, seed=3))
    return [
        {
            "inference_id": f"inf-{k}",
            "correlation_id": "req",
            "model": {"name": "fraud", "version": 1},
            "at": AT.isoformat(),
            "inputs": t | {"card_id": "*****"},
            "output": {
                "score": 0.9 if k % 10 == 0 else 0.1,
                "decision": "decline" if k % 10 == 0 else "approve",
            },
        }
        for k, t in enumerate(txns)
    ]


def test_a_capture_message_becomes_one_delta_and_ledger_rows_with_groups() -> None:
    # GIVEN a capture message of 20 fraud records, every tenth declined
    records = _records(20)
    # WHEN it is ingested
    done = ingest(
        records, "msg-7", attributes=("region", "customer_age_band"), positive=("decline",)
    )
    # THEN its rows are one delta with the message's id, holding the features and score
    assert done.rows is not None and done.rows.delta_id == delta_id_for("msg-7")
    delta = delta_rows([done.rows]).profile()
    assert delta.delta_ids == frozenset({delta_id_for("msg-7")})
    assert delta.rows == 20 and delta.score is not None and delta.score.count == 20
    # AND each prediction goes to the ledger with its decision as 0/1 and its groups
    assert [p.predicted for p in done.predictions] == [int(k % 10 == 0) for k in range(20)]
    assert done.predictions[0].groups == {
        "region": records[0]["inputs"]["region"],
        "customer_age_band": records[0]["inputs"]["customer_age_band"],
    }
    assert profile_key("fraud", AT, "msg-7") == "profiles/fraud/2026-11-27/10/msg-7.bin"


def test_a_record_without_a_valid_score_is_refused_with_its_message_id() -> None:
    records = _records(2)
    records[1]["output"] = {"score": 1.7, "decision": "decline"}
    with pytest.raises(CaptureRecordError, match="msg-9: a score is outside"):
        ingest(records, "msg-9", attributes=(), positive=("decline",))


def test_registering_a_version_stores_its_baseline_profile_when_training_wrote_one(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from aibackend.adapters.local import SqliteModelRegistry
    from aibackend.models.card import PROFILE_FILE

    # GIVEN an artifact folder with profile.bin, and one without
    store = LocalObjectStore(tmp_path / "models", bucket="models")
    registry = SqliteModelRegistry(tmp_path / "registry.db", store)
    (tiny_model_dir / PROFILE_FILE).write_bytes(b"AIBP-profile")
    # WHEN both are registered
    with_profile = registry.register(tiny_model_dir)
    (tiny_model_dir / PROFILE_FILE).unlink()
    without = registry.register(tiny_model_dir)
    # THEN the first version's profile is stored beside its model; the second has none
    assert store.get(with_profile.prefix + PROFILE_FILE) == b"AIBP-profile"
    assert not [o for o in store.list(without.prefix) if o.key.endswith(PROFILE_FILE)]


def test_a_group_treated_worse_publishes_bias_detected_for_that_attribute(tmp_path: Path) -> None:
    # GIVEN 2,000 labelled predictions in two regions; east's legitimate transactions are
    # declined four times as often as west's (a false positive rate gap of about 0.3)
    rng = np.random.default_rng(5)
    n = 2000
    region = np.where(np.arange(n) % 2 == 0, "east", "west")
    y = rng.random(n) < 0.1
    fp_rate = np.where(region == "east", 0.4, 0.1)
    predicted = np.where(y, rng.random(n) < 0.8, rng.random(n) < fp_rate)
    ledger = SqliteLabelStore(tmp_path / "labels.db")
    ledger.put_predictions(
        [
            CapturedPrediction(
                inference_id=f"i{k}",
                time=AT,
                score=0.9 if predicted[k] else 0.1,
                predicted=int(predicted[k]),
                groups={"region": str(region[k]), "customer_age_band": "26-35"},
            )
            for k in range(n)
        ]
    )
    ledger.put_labels(
        [Label(inference_id=f"i{k}", label=int(y[k]), received_at=AT) for k in range(n)]
    )
    ports, bus = _ports(tmp_path, version=1)
    # WHEN the monitor judges the window
    report = _run(ports, ledger, "run")
    # THEN Bias Detected names region, the metric, the groups and the gap with its interval
    bias = [e.detail for e in bus.events if e.detail_type == "Bias Detected"]
    assert bias and {d["attribute"] for d in bias} == {"region"}
    fpr = next(d for d in bias if d["metric"] == "false_positive_rate")
    assert (fpr["high_group"], fpr["low_group"]) == ("east", "west")
    assert fpr["lower"] > 0 and fpr["statistic"] >= fpr["threshold"] == 0.1
    assert report.bias is not None and report.bias.detected
    # AND the BiasGap metric is the largest compared gap
    assert metric_values(report)["BiasGap"] >= fpr["statistic"]
