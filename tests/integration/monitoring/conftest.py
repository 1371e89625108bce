"""The monitoring services under `aib dev`'s local runtime: fraud_score captures, monitor_capture
profiles and ledgers, monitor_feedback and monitor_labels take labels, monitor_models judges."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aibackend.local.runtime import LocalRuntime
from aibackend.monitoring.labels import SqliteLabelStore
from aibackend.monitoring.profiles import WindowKey
from tests.support import FUNCTIONS, running_runtime, wait_for

SERVICES = (
    "fraud_score",
    "monitor_capture",
    "monitor_feedback",
    "monitor_labels",
    "monitor_models",
)


@pytest.fixture(scope="module")
def monitoring_functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The services' declarations, with the capture queue's 5 s batching window at 0 (and its
    batch size at SQS's 10 that allows) so a test waits for its captures in well under a
    second."""
    functions = tmp_path_factory.mktemp("monitoring") / "functions"
    for name in SERVICES:
        shutil.copytree(
            FUNCTIONS / name, functions / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(FUNCTIONS / "monitoring.toml", functions / "monitoring.toml")
    toml = functions / "monitor_capture" / "function.toml"
    text, n = re.subn(r"(?m)^batching_window_s = .*$", "batching_window_s = 0", toml.read_text())
    # SQS (and the catalog) allow batches over 10 only with a window.
    text, m = re.subn(r"(?m)^batch_size = .*$", "batch_size = 10", text)
    assert n == m == 1
    toml.write_text(text)
    return functions


def ledger(rt: LocalRuntime) -> SqliteLabelStore:
    return SqliteLabelStore(rt.settings.state_dir / "monitoring" / "labels-fraud.db")


def wait_for_captures(rt: LocalRuntime, n: int, key: WindowKey) -> None:
    """Until the ledger holds `n` predictions of the window and the capture queue is empty (the
    capture is asynchronous, and monitor_capture writes a batch's ledger rows before its
    profile deltas: the ledger alone can be complete while the last deltas are not)."""
    capture = rt.queues.get("inference-capture")

    def done() -> bool:
        stats = capture.stats()
        return (
            ledger(rt).window(key.start, key.end).predictions >= n
            and stats.visible + stats.in_flight + stats.delayed == 0
        )

    wait_for(done, timeout=60)


def published(rt: LocalRuntime, detail_type: str) -> list[dict[str, Any]]:
    """Events of `detail_type` on the local bus's archive."""
    with sqlite3.connect(rt.settings.state_dir / "events.db") as db:
        rows = db.execute("SELECT event FROM bus_archive ORDER BY seq").fetchall()
    events = [json.loads(r[0]) for r in rows]
    return [e for e in events if e["detail-type"] == detail_type]


def report(rt: LocalRuntime, key: str) -> dict[str, Any]:
    path = rt.settings.state_dir / "buckets" / "monitoring" / key
    return json.loads(path.read_text())  # type: ignore[no-any-return]


@pytest.fixture
def runtime(
    monitoring_functions: Path, fraud_state: Path, tmp_path: Path
) -> Iterator[LocalRuntime]:
    """A fresh runtime per test (its own ledger, bucket and bus) on the trained fraud state."""
    with running_runtime(monitoring_functions, tmp_path / "state", seed_state=fraud_state) as rt:
        yield rt
