"""A local state folder with real monitoring output, built by the monitoring code itself:
capture messages ingested into profile deltas and ledger rows (`monitoring.ingest`), late
labels in the ledger, `monitor_window` writing each hour's `MonitorReport`, and functions'
`REPORT` log lines as `aib dev` writes them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from aibackend.adapters.local import LocalObjectStore
from aibackend.fraud.features import FEATURES, transactions_matrix
from aibackend.fraud.generator import generate_transactions, to_records
from aibackend.fraud.schema import Transaction
from aibackend.local.logs import LogSink, log_path, report_line
from aibackend.models.card import PROFILE_FILE
from aibackend.monitoring.config import MonitorSettings
from aibackend.monitoring.ingest import bundle_key, delta_rows, ingest
from aibackend.monitoring.labels import Label, SqliteLabelStore
from aibackend.monitoring.profiles import WindowKey, profile_matrix
from aibackend.monitoring.service import MonitorReport, Ports, monitor_window
from aibackend.ports import PutEvent, PutEventsResult

SETTINGS = MonitorSettings(min_group_size=50)
ATTRIBUTES = ("customer_age_band", "region")


class _Bus:
    def put_events(self, entries: list[PutEvent]) -> PutEventsResult:
        return PutEventsResult(event_ids=tuple(f"ev-{k}" for k in range(len(entries))))


class _Registry:
    def production(self, name: str) -> Any:
        return SimpleNamespace(version=1, prefix=f"{name}/1/")


def _scores(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A decent fraud model's scores: frauds high, legitimate low, overlapping a little."""
    return np.where(labels == 1, rng.beta(4, 3, labels.size), rng.beta(1.5, 8, labels.size))


@dataclass(frozen=True)
class MonitoringState:
    state_dir: Path
    hours: list[WindowKey]
    reports: list[MonitorReport]
    #: Per hour: scores captured in it (what the score quantiles summarize).
    scores: list[np.ndarray]


def write_monitoring_state(
    state_dir: Path, *, first_hour: datetime, hours: int, shifted: int, rows: int = 400
) -> MonitoringState:
    """`hours` hourly windows of fraud captures from `first_hour` on, `rows` each in messages
    of 100, 3/4 of them labelled; the window number `shifted` carries amounts x3 (two
    features drift). The production version's baseline profile comes from 5,000 generated
    transactions."""
    rng = np.random.default_rng(5)
    store = LocalObjectStore(state_dir / "buckets" / "monitoring", bucket="monitoring")
    models = LocalObjectStore(state_dir / "buckets" / "models", bucket="models")
    ports = Ports(store=store, models=models, registry=_Registry(), bus=_Bus())  # type: ignore[arg-type]
    ledger = SqliteLabelStore(state_dir / "monitoring" / "labels-fraud.db")
    # Rows drawn at random from one generated month: consecutive rows share a few cards.
    pool = generate_transactions(5_000 + hours * rows, seed=1, fraud_rate=0.1)
    order = rng.permutation(5_000 + hours * rows)
    picks = [order[:5_000]] + [
        order[5_000 + h * rows : 5_000 + (h + 1) * rows] for h in range(hours)
    ]
    parts = [{k: np.asarray(v)[np.sort(p)] for k, v in pool.items()} for p in picks]
    base = parts[0]
    x = transactions_matrix([Transaction.model_validate(t) for t in to_records(base)])
    base_scores = _scores(np.asarray(base["is_fraud"]), rng)
    models.put(
        "fraud/1/" + PROFILE_FILE,
        profile_matrix(x, FEATURES, delta_id="baseline", scores=base_scores).to_bytes(),
    )
    keys: list[WindowKey] = []
    reports: list[MonitorReport] = []
    captured: list[np.ndarray] = []
    for h in range(hours):
        key = WindowKey.for_time(first_hour + timedelta(hours=h), "hour")
        cols = parts[1 + h]
        labels = np.asarray(cols["is_fraud"], dtype=np.int64)
        scores = _scores(labels, rng)
        txns = to_records(cols)
        if h == shifted:
            txns = [t | {"amount": round(t["amount"] * 3, 2)} for t in txns]
        _capture(store, ledger, key, txns, scores)
        ledger.put_labels(
            [
                Label(inference_id=f"{key.start:%H}-{k}", label=int(labels[k]), received_at=key.end)
                for k in range(rows * 3 // 4)
            ]
        )
        reports.append(
            monitor_window(
                ports, ledger, "fraud", key, SETTINGS, cause="test", now=key.end, pinned=None
            )
        )
        keys.append(key)
        captured.append(scores)
    return MonitoringState(state_dir, keys, reports, captured)


def _capture(
    store: LocalObjectStore,
    ledger: SqliteLabelStore,
    key: WindowKey,
    txns: list[dict[str, Any]],
    scores: np.ndarray,
) -> None:
    at = key.start + timedelta(minutes=10)
    for first in range(0, len(txns), 100):
        records = [
            {
                "inference_id": f"{key.start:%H}-{k}",
                "correlation_id": "req",
                "model": {"name": "fraud", "version": 1},
                "at": at.isoformat(),
                "inputs": txns[k],
                "output": {
                    "score": float(scores[k]),
                    "decision": "decline" if scores[k] >= 0.5 else "approve",
                },
            }
            for k in range(first, min(first + 100, len(txns)))
        ]
        message = f"msg-{key.start:%H}-{first}"
        done = ingest(records, message, attributes=ATTRIBUTES, positive=("decline",))
        assert done.rows is not None
        store.put(bundle_key("fraud", done.at, message), delta_rows([done.rows]).to_bytes())
        ledger.put_predictions(done.predictions)


def write_invocations(
    state_dir: Path, function: str, at: datetime, durations_ms: list[float], failed: set[int]
) -> None:
    """`REPORT` lines of `function`, one per duration, all in the minute of `at`."""
    sink = LogSink(log_path(state_dir, function))
    for k, ms in enumerate(durations_ms):
        stamp = (at + timedelta(milliseconds=k)).timestamp()
        sink.write_line(report_line(f"req-{k}", ms, None, k in failed), at=stamp)


HOUR0 = datetime(2026, 11, 27, 6, tzinfo=UTC)
