"""Run completion: exactly one caller marks a run completed (SQLite and DynamoDB alike), and
the run's quarantine report exists before it is marked."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from aibackend.adapters.local import LocalObjectStore
from aibackend.pipeline.completion import FIRST_ROWS, quarantine_report, report_key, settle
from aibackend.pipeline.messages import jsonl
from aibackend.pipeline.runs import (
    DynamoRunStore,
    Progress,
    RunFailure,
    RunInfo,
    RunStore,
    SqliteRunStore,
    run_id,
    status,
)
from aibackend.ports import ObjectStore
from tests.support import create_data_table

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
BUCKET = "data"


@pytest.fixture(params=["sqlite", "dynamodb"])
def table(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunStore]:
    if request.param == "sqlite":
        yield SqliteRunStore(tmp_path / "runs.db")
        return
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        import boto3

        db = boto3.client("dynamodb")
        create_data_table(db, "runs")
        yield DynamoRunStore("runs", db)


class CountingStore:
    """A local bucket that counts puts per key and can refuse the next put."""

    def __init__(self, root: Path) -> None:
        self.inner = LocalObjectStore(root, bucket=BUCKET)
        self.bucket = BUCKET
        self.puts: dict[str, int] = {}
        self.refuse_next = False

    def put(self, key: str, data: bytes, **kw: Any) -> Any:
        if self.refuse_next:
            self.refuse_next = False
            raise OSError("bucket unavailable")
        self.puts[key] = self.puts.get(key, 0) + 1
        return self.inner.put(key, data, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def bucket(tmp_path: Path) -> CountingStore:
    return CountingStore(tmp_path / "bucket")


def _start(table: RunStore, rows: int = 8) -> RunInfo:
    key = "raw/transactions/day.csv"
    return table.start(
        RunInfo(run_id=run_id(BUCKET, key, "e1"), bucket=BUCKET, key=key, etag="e1", started=T0)
    )


def _stores(store: CountingStore) -> Any:
    return lambda _bucket: store


def test_only_the_write_that_accounts_for_the_last_chunk_sees_the_run_complete(
    table: RunStore,
) -> None:
    # GIVEN a run of two chunks, ingested, chunk 0 validated with valid rows
    run = _start(table)
    table.record(run.run_id, "ingest", 0, {"received": 3})
    table.record(run.run_id, "ingest", 1, {"received": 3})
    first = table.finish_ingest(run.run_id, rows=6, chunks=2)
    scored = table.record(run.run_id, "validate", 0, {"valid": 3, "quarantined": 0})
    # WHEN chunk 0 is stored and chunk 1 turns out to have nothing valid
    stored = table.record(run.run_id, "store", 0, {"stored": 3})
    last = table.record(run.run_id, "validate", 1, {"valid": 0, "quarantined": 3})
    # THEN a write that gives no chunk an outcome reports nothing, the others their progress,
    # and only the last one sees the run complete
    assert scored is None
    assert first == Progress(chunks_done=0, chunks=2)
    assert stored == Progress(chunks_done=1, chunks=2) and not stored.complete
    assert last is not None and last.complete


def test_progress_before_ingest_finishes_is_not_complete(table: RunStore) -> None:
    # GIVEN a run whose only chunk is stored before ingest recorded how many it sent
    run = _start(table)
    early = table.record(run.run_id, "store", 0, {"stored": 1})
    # WHEN ingest then finishes
    late = table.finish_ingest(run.run_id, rows=1, chunks=1)
    # THEN the store's write could not complete the run; ingest's does
    assert early == Progress(chunks_done=1, chunks=None) and not early.complete
    assert late.complete


def test_settling_twice_completes_once_and_writes_the_report_once(
    table: RunStore, bucket: CountingStore
) -> None:
    # GIVEN a complete run
    run = _start(table)
    table.record(run.run_id, "ingest", 0, {"received": 1})
    progress = table.record(run.run_id, "validate", 0, {"valid": 0, "quarantined": 1})
    progress = table.finish_ingest(run.run_id, rows=1, chunks=1)
    # WHEN the last write is settled twice (a redelivery records the same chunk again)
    first = settle(table, run.run_id, progress, _stores(bucket))
    again = settle(table, run.run_id, progress, _stores(bucket))
    # THEN the first completes the run, the second finds it completed
    assert first is not None and again is None
    assert first.state == "succeeded" and first.report_key == report_key(run.run_id)
    assert bucket.puts == {report_key(run.run_id): 1}
    # AND the status shows when and where the report is
    s = status(table, run.run_id)
    assert s is not None
    assert (s.state, s.completed_at, s.report_key) == (
        "succeeded",
        first.completed_at,
        first.report_key,
    )


def test_concurrent_settles_complete_the_run_once(tmp_path: Path, bucket: CountingStore) -> None:
    # GIVEN a complete run in the local table
    table = SqliteRunStore(tmp_path / "runs.db")
    run = _start(table)
    progress = table.finish_ingest(run.run_id, rows=0, chunks=0)
    won: list[object] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        won.append(settle(table, run.run_id, progress, _stores(bucket)))

    # WHEN eight stages settle it at the same time
    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # THEN exactly one wins, and the report is there (racing writers put the same bytes)
    assert sum(w is not None for w in won) == 1
    assert 1 <= bucket.puts[report_key(run.run_id)] <= 8
    assert json.loads(bucket.get(report_key(run.run_id)))["run_id"] == run.run_id


def test_a_report_that_cannot_be_written_leaves_the_run_for_the_retry(
    table: RunStore, bucket: CountingStore
) -> None:
    # GIVEN a complete run and a bucket that refuses the next put
    run = _start(table)
    progress = table.finish_ingest(run.run_id, rows=0, chunks=0)
    bucket.refuse_next = True
    # WHEN the completing stage settles it, fails, and its retry settles it again
    with pytest.raises(OSError, match="bucket unavailable"):
        settle(table, run.run_id, progress, _stores(bucket))
    # THEN the failed try left the run unmarked
    assert table.completion(run.run_id) is None
    retried = settle(table, run.run_id, progress, _stores(bucket))
    # AND the retry writes the report and completes it
    assert retried is not None and table.completion(run.run_id) == retried
    assert bucket.puts == {report_key(run.run_id): 1}


def test_a_run_whose_ingest_failed_completes_as_failed(
    table: RunStore, bucket: CountingStore
) -> None:
    # GIVEN a run whose ingest gave up before sending anything
    run = _start(table)
    failure = RunFailure(reason="the CSV header lacks amount", retryable=False, attempts=1)
    # WHEN that is recorded and settled
    done = settle(
        table,
        run.run_id,
        table.finish_ingest(run.run_id, rows=0, chunks=0, failure=failure),
        _stores(bucket),
    )
    # THEN the run completes as failed, the reason in its status and in its report
    assert done is not None and done.state == "failed"
    s = status(table, run.run_id)
    assert s is not None and s.state == "failed" and s.run.failure == failure
    report = json.loads(bucket.get(report_key(run.run_id)))
    assert report["state"] == "failed"
    assert report["failure"]["reason"] == "the CSV header lacks amount"


def _quarantine(store: ObjectStore, run: str, chunk: int, items: list[tuple[int, str]]) -> str:
    key = f"quarantine/{run}/{chunk}.jsonl"
    store.put(key, jsonl([{"index": i, "reason": r, "row": {"n": i}} for i, r in items]))
    return key


def test_the_report_counts_reasons_and_columns_with_file_row_numbers(
    table: RunStore, bucket: CountingStore
) -> None:
    # GIVEN a run of three chunks (4, 4 and 2 rows) with quarantined rows in chunks 0 and 2
    run = _start(table)
    for chunk, n in enumerate((4, 4, 2)):
        table.record(run.run_id, "ingest", chunk, {"received": n})
    table.finish_ingest(run.run_id, rows=10, chunks=3)
    k0 = _quarantine(
        bucket,
        run.run_id,
        0,
        [(1, "amount: must be greater than 0"), (3, "currency: unsupported currency code")],
    )
    k2 = _quarantine(
        bucket, run.run_id, 2, [(0, "amount: must be greater than 0"), (1, "amount: missing")]
    )
    bucket.put(f"quarantine/{run.run_id}/notes.txt", b"not a chunk file")
    stored = table.get(run.run_id)
    assert stored is not None
    # WHEN its report is built
    report = quarantine_report(bucket, stored, table.chunks(run.run_id))
    # THEN counts are per reason (most frequent first) and per column, with the rows' numbers
    # in the file (chunk 2 starts after 8 rows)
    assert report.quarantined == 4 and report.rows == 10 and report.quarantine_rate == 0.4
    assert list(report.reasons) == [
        "amount: must be greater than 0",
        "amount: missing",
        "currency: unsupported currency code",
    ]
    assert report.reasons["amount: must be greater than 0"].first_rows == [2, 9]
    assert report.reasons["amount: missing"].first_rows == [10]
    assert report.reasons["currency: unsupported currency code"].first_rows == [4]
    assert report.columns == {"amount": 3, "currency": 1}
    assert report.row_files == [k0, k2]


def test_the_report_keeps_only_the_first_rows_of_a_frequent_reason(
    table: RunStore, bucket: CountingStore
) -> None:
    # GIVEN a chunk whose every row has the same reason
    run = _start(table)
    table.record(run.run_id, "ingest", 0, {"received": 50})
    table.finish_ingest(run.run_id, rows=50, chunks=1)
    _quarantine(bucket, run.run_id, 0, [(i, "card_id: missing") for i in range(50)])
    stored = table.get(run.run_id)
    assert stored is not None
    # WHEN the report is built
    report = quarantine_report(bucket, stored, table.chunks(run.run_id))
    # THEN it counts them all and lists the first FIRST_ROWS row numbers
    reason = report.reasons["card_id: missing"]
    assert reason.count == 50
    assert reason.first_rows == list(range(1, FIRST_ROWS + 1))


@pytest.fixture
def cli_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The local state folder the CLI reads (`AIB_STATE_DIR`)."""
    monkeypatch.setenv("AIB_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("AIB_ADAPTERS", raising=False)
    return tmp_path


def _failed_run(state: Path, reason: str) -> tuple[SqliteRunStore, RunInfo]:
    """The state folder's run table, with a run whose ingest failed for `reason`, settled."""
    table = SqliteRunStore(state / "tables" / "pipeline-runs.db")
    run = _start(table)
    failure = RunFailure(reason=reason, retryable=False, attempts=1)
    progress = table.finish_ingest(run.run_id, rows=0, chunks=0, failure=failure)
    bucket = LocalObjectStore(state / "buckets" / BUCKET, bucket=BUCKET)
    settle(table, run.run_id, progress, lambda _b: bucket)
    return table, run


def test_the_status_command_shows_the_completion_and_why_ingest_failed(
    cli_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a local run whose ingest failed, settled
    _, run = _failed_run(cli_state, "the gzip stream breaks at data row 1")
    # WHEN `aib pipeline status` shows it
    from aibackend.cli import main

    assert main(["pipeline", "status", run.run_id]) == 0
    out = capsys.readouterr().out
    # THEN it says the run failed, where its report is, and why
    assert f"failed, report {report_key(run.run_id)}; complete" in out
    assert "ingest failed: the gzip stream breaks at data row 1" in out


def test_the_runs_command_lists_the_recent_runs_with_their_state(
    cli_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aibackend.cli import main

    # GIVEN no run yet: it says what starts one
    assert main(["pipeline", "runs"]) == 1
    assert "drop a file under raw/transactions/" in capsys.readouterr().err
    # GIVEN a run whose ingest failed and, a minute later, one still running
    table, failed = _failed_run(cli_state, "not a CSV")
    key = "raw/transactions/next.csv"
    running = table.start(
        RunInfo(
            run_id=run_id(BUCKET, key, "e2"),
            bucket=BUCKET,
            key=key,
            etag="e2",
            started=T0 + timedelta(minutes=1),
        )
    )
    table.record(running.run_id, "ingest", 0, {"received": 5})
    # WHEN the runs are listed
    assert main(["pipeline", "runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # THEN one line each, newest first, with its state, file and counts
    assert lines == [
        f"{running.run_id}  2026-11-27 09:01:00  running    {key}  "
        "received 5  stored 0  quarantined 0",
        f"{failed.run_id}  2026-11-27 09:00:00  failed     raw/transactions/day.csv  "
        "received 0  stored 0  quarantined 0",
    ]
