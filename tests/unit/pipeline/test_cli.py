"""`aib pipeline status [RUN] [--watch]`."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aibackend.cli import main
from aibackend.pipeline.runs import RunInfo, SqliteRunStore, run_id


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SqliteRunStore:
    monkeypatch.setenv("AIB_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("AIB_ADAPTERS", raising=False)
    return SqliteRunStore(tmp_path / "tables" / "pipeline-runs.db")


def _started(runs: SqliteRunStore, key: str) -> str:
    rid = run_id("pipeline-data", key, "e")
    runs.start(
        RunInfo(run_id=rid, bucket="pipeline-data", key=key, etag="e", started=datetime.now(UTC))
    )
    runs.finish_ingest(rid, rows=10, chunks=2)
    runs.record(rid, "ingest", 0, {"received": 6})
    runs.record(rid, "ingest", 1, {"received": 4})
    runs.record(rid, "validate", 0, {"valid": 5, "quarantined": 1})
    runs.record(rid, "score", 0, {"scored": 5})
    runs.record(rid, "store", 0, {"stored": 5})
    return rid


def test_status_shows_the_latest_run_by_default(
    runs: SqliteRunStore, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a run half done
    rid = _started(runs, "raw/transactions/a.csv")
    # WHEN `aib pipeline status` runs without a run id
    assert main(["pipeline", "status"]) == 0
    out = capsys.readouterr().out
    # THEN it shows that run's file, progress and counts
    assert f"run {rid}: s3://pipeline-data/raw/transactions/a.csv" in out
    assert " 50% 1/2 chunks" in out
    assert "received 10  valid 5  quarantined 1  scored 5  stored 5  failed 0" in out
    assert "running" in out


def test_watch_returns_once_the_run_completes(
    runs: SqliteRunStore, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a half-done run whose last chunk finishes a moment later
    rid = _started(runs, "raw/transactions/b.csv")

    def finish() -> None:
        time.sleep(0.3)
        runs.record(rid, "validate", 1, {"valid": 4, "quarantined": 0})
        runs.record(rid, "score", 1, {"scored": 4})
        runs.record(rid, "store", 1, {"stored": 4})

    threading.Thread(target=finish).start()
    # WHEN `aib pipeline status RUN --watch` runs
    assert main(["pipeline", "status", rid, "--watch"]) == 0
    # THEN it ends on the complete run
    last = capsys.readouterr().out.rstrip().split("\r")[-1]
    assert last.startswith("[" + "#" * 30 + "] 100% 2/2 chunks") and last.endswith("complete")


def test_status_of_an_unknown_run_fails_with_a_message(
    runs: SqliteRunStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pipeline", "status", "f" * 24]) == 1
    assert "no pipeline run 'ffffffffffffffffffffffff'" in capsys.readouterr().err
