"""The monitoring services end to end under `aib dev`: predictions scored by fraud_score are
captured, profiled and put in the ledger; labels arrive through POST /v1/feedback and a labels
file; the monitor's report has the counts, completeness and an AUC computed directly from the
same scores and labels; shifted traffic raises `Model Drift Detected` once, unshifted does not."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from aibackend.adapters.local import LocalObjectStore
from aibackend.fraud.generator import generate_transactions, to_records
from aibackend.local.runtime import LocalRuntime
from aibackend.monitoring.profiles import WindowKey
from aibackend.monitoring.service import report_key
from tests.integration.monitoring.conftest import (
    ledger,
    published,
    report,
    wait_for_captures,
)
from tests.support import runtime_client, wait_for

pytestmark = pytest.mark.slow
N = 1000


def _traffic(seed: int, *, fraud_rate: float = 0.01) -> tuple[list[dict[str, Any]], np.ndarray]:
    """N transactions drawn at random from a generated month, like the training data (one
    card's transactions share its age, currency and habits: N consecutive rows would hold
    only N / 15 cards)."""
    cols = generate_transactions(30 * N, seed=seed, fraud_rate=fraud_rate)
    rows = np.sort(np.random.default_rng(seed).choice(30 * N, N, replace=False))
    picked = {k: np.asarray(v)[rows] for k, v in cols.items()}
    return to_records(picked), np.asarray(picked["is_fraud"], dtype=np.int8)


def _shifted(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Card-testing traffic: amounts x3, card not present, from abroad, between 1 and 4 am:
    five of the model's ten features move (amount x3 alone moves two: a share of 0.2, below
    the 0.5 that makes dataset drift; the report and `DriftedFeatures` still show them)."""
    out = []
    for k, r in enumerate(records):
        at = datetime.fromisoformat(r["timestamp"]).replace(hour=1 + k % 4)
        out.append(
            r
            | {
                "amount": round(r["amount"] * 3, 2),
                "card_present": False,
                "country_mismatch": True,
                "timestamp": at.isoformat(),
            }
        )
    return out


def _score(rt: LocalRuntime, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r = runtime_client(rt).post("/v1/fraud/score", json={"transactions": records})
    assert r.status_code == 200, r.text
    return r.json()["results"]  # type: ignore[no-any-return]


def _monitor(rt: LocalRuntime, window: WindowKey, event_id: str) -> dict[str, Any]:
    fmt = "%Y-%m-%d" if window.span == "day" else "%Y-%m-%dT%H"
    w = f"{window.span}:{window.start.strftime(fmt)}"
    event = {
        "version": "0",
        "id": event_id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": datetime.now(UTC).isoformat(),
        "region": "eu-west-1",
        "resources": [],
        "detail": {"model": "fraud", "windows": [w]},
    }
    out = rt.hosts["monitor_models"].invoke(event)
    assert [r["window"]["span"] for r in out["reports"]] == [window.span]
    return report(rt, report_key("fraud", window))


def test_report_counts_completeness_and_auc_from_late_labels_match_a_direct_computation(
    runtime: LocalRuntime,
) -> None:
    # GIVEN 1,000 transactions scored through fraud_score and captured (5% fraud)
    day = WindowKey.for_time(datetime.now(UTC), "day")
    records, truth = _traffic(seed=11, fraud_rate=0.05)
    results = _score(runtime, records)
    wait_for_captures(runtime, N, day)
    ids = [r["inference_id"] for r in results]
    scores = np.array([r["score"] for r in results])
    # WHEN labels of the first 600 arrive through POST /v1/feedback (with 5 for predictions
    # never captured), and 150 more, plus 2 bad rows, in a labels file
    client = runtime_client(runtime, scopes=("feedback:write",))
    labels = [{"inference_id": i, "label": int(y)} for i, y in zip(ids, truth, strict=True)]
    never = [{"inference_id": f"never-{k}", "label": 0} for k in range(5)]
    body = {"model": "fraud", "labels": labels[:600] + never}
    posted = client.post("/v1/feedback", json=body)
    csv = "inference_id,label\n" + "".join(
        f"{i},{int(y)}\n" for i, y in zip(ids[600:750], truth[600:750], strict=True)
    )
    csv += "bad-row-label,maybe\nonly-one-field\n"
    bucket = LocalObjectStore(
        runtime.settings.state_dir / "buckets" / "monitoring", bucket="monitoring"
    )
    bucket.put("labels/fraud/chargebacks.csv", csv.encode())
    wait_for(lambda: ledger(runtime).window(day.start, day.end).labelled >= 750, timeout=30)
    got = _monitor(runtime, day, "run-accuracy")
    # THEN the feedback answer counts what joined and what waits for its capture
    assert posted.status_code == 202, posted.text
    assert posted.json() | {} == {
        "model": "fraud",
        "received": 605,
        "accepted": 605,
        "corrected": 0,
        "duplicates": 0,
        "unknown_yet": 5,
    }
    # AND the file's bad rows are quarantined with their reasons, the rest went in
    rejected = bucket.get("labels-quarantine/fraud/chargebacks.csv.rejected.csv").decode()
    assert "not 0/1 or true/false" in rejected and "1 fields, expected 2" in rejected
    # AND the report has the window's counts, completeness and the directly computed AUC
    acc = got["accuracy"]
    assert got["rows"] == N and acc["predictions"] == N
    assert acc["labelled"] == 750 and acc["completeness"] == pytest.approx(0.75)
    assert acc["roc_auc"] == pytest.approx(roc_auc_score(truth[:750], scores[:750]), abs=1e-12)
    assert acc["positives"] == int(truth[:750].sum())
    # AND drift was tested against the production version's baseline profile
    assert got["baseline"]["profile"] is True and got["drift"] is not None


def _drift_summary(got: dict[str, Any]) -> str:
    cols = [*got["drift"]["features"], *got["drift"]["prediction"]]
    return ", ".join(f"{c['column']}: {c['test']} {c['statistic']:.3f}" for c in cols)


def test_shifted_traffic_raises_model_drift_detected_once_per_window(
    runtime: LocalRuntime,
) -> None:
    # GIVEN 1,000 captured predictions of card-testing traffic (see _shifted)
    hour = WindowKey.for_time(datetime.now(UTC), "hour")
    records, _ = _traffic(seed=21)
    _score(runtime, _shifted(records))
    wait_for_captures(runtime, N, hour)
    # WHEN the monitor judges the hour, and is run again for the same hour
    first = _monitor(runtime, hour, "run-1")
    again = _monitor(runtime, hour, "run-2")
    # THEN the moved features drift, and so does the score they drive
    drifted = set(first["drift"]["drifted_features"])
    moved = {"amount_eur", "amount_ratio", "hour", "card_present", "country_mismatch"}
    assert moved <= drifted and first["drift"]["dataset_drift"], _drift_summary(first)
    # AND Model Drift Detected is on the bus once, carrying test, statistic, threshold, window
    # and baseline version, though the window was judged twice
    events = published(runtime, "Model Drift Detected")
    assert sorted(e["detail"]["finding"] for e in events) == ["dataset", "prediction"]
    detail = next(e["detail"] for e in events if e["detail"]["finding"] == "dataset")
    assert detail["test"] == "drift_share" and detail["threshold"] == 0.5
    assert detail["model"] == "fraud" and detail["baseline_version"] >= 1
    assert detail["window"]["span"] == "hour"
    assert detail["statistic"] >= detail["threshold"]
    assert {c["column"] for c in detail["columns"]} >= moved | {"score"}
    assert detail["correlation_id"] == detail["caused_by"] == "run-1"
    assert [f["new"] for f in again["findings"]] == [False] * len(first["findings"])


def test_unshifted_traffic_raises_no_drift(runtime: LocalRuntime) -> None:
    # GIVEN 1,000 captured predictions of traffic like the training data
    hour = WindowKey.for_time(datetime.now(UTC), "hour")
    records, _ = _traffic(seed=31)
    _score(runtime, records)
    wait_for_captures(runtime, N, hour)
    # WHEN the monitor judges the hour
    got = _monitor(runtime, hour, "run-unshifted")
    # THEN neither the dataset nor the score drifts (a single feature's distance may pass its
    # threshold by chance at this size; dataset drift needs half of them) and nothing is
    # published
    assert got["rows"] == N
    assert not got["drift"]["dataset_drift"], _drift_summary(got)
    score = next(c for c in got["drift"]["prediction"] if c["column"] == "score")
    assert not score["drifted"], _drift_summary(got)
    assert published(runtime, "Model Drift Detected") == []
    assert got["findings"] == []
