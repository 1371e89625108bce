"""A file that ingest cannot read through completes its run as failed, with a reason a person can
act on: at once when the file is wrong, on the last attempt when the object store is."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest

from aibackend.adapters.local import LocalObjectStore
from aibackend.fraud.generator import generate_transactions, write_csv
from aibackend.pipeline.completion import report_key, settle
from aibackend.pipeline.failure import REQUIRED_COLUMNS, ingest_file
from aibackend.pipeline.runs import RunInfo, RunStore, SqliteRunStore, run_id, status

BUCKET = "pipeline-data"
ATTEMPTS = 3


class ListQueue:
    def __init__(self) -> None:
        self.bodies: list[str] = []

    def send(self, body: str, **_: Any) -> str:
        self.bodies.append(body)
        return str(len(self.bodies))


class FlakyStore(LocalObjectStore):
    """A bucket whose objects cannot be opened: the store is down."""

    def path_of(self, key: str) -> Path:
        raise ConnectionResetError("connection reset by peer")


@pytest.fixture
def bucket(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "bucket", bucket=BUCKET)


@pytest.fixture
def table(tmp_path: Path) -> RunStore:
    return SqliteRunStore(tmp_path / "runs.db")


def _csv(tmp_path: Path, n: int) -> bytes:
    path = tmp_path / "gen.csv"
    write_csv(generate_transactions(n, seed=3), path)
    return path.read_bytes()


def _ingest(
    store: LocalObjectStore, table: RunStore, key: str, out: ListQueue | None = None
) -> RunInfo:
    return ingest_file(
        bucket=BUCKET,
        key=key,
        etag="e1",
        stores=lambda _b: store,
        runs=table,
        out=out or ListQueue(),  # type: ignore[arg-type]
        chunk_size=2,
        attempts=ATTEMPTS,
    )


def _report(store: LocalObjectStore, run: RunInfo) -> dict[str, Any]:
    return dict(json.loads(store.get(report_key(run.run_id))))


def test_a_csv_header_without_required_columns_fails_the_run_at_once(
    tmp_path: Path, bucket: LocalObjectStore, table: RunStore
) -> None:
    # GIVEN a CSV whose header lacks `amount` and `currency`
    rows = list(csv.DictReader(io.StringIO(_csv(tmp_path, 5).decode())))
    out = io.StringIO()
    kept = [c for c in rows[0] if c not in ("amount", "currency")]
    w = csv.DictWriter(out, fieldnames=kept, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    bucket.put("raw/transactions/day.csv", out.getvalue().encode())
    queue = ListQueue()
    # WHEN it is ingested
    run = _ingest(bucket, table, "raw/transactions/day.csv", queue)
    # THEN nothing is sent, and the run completed as failed, naming the missing columns
    assert queue.bodies == []
    assert run.failure is not None and not run.failure.retryable
    assert "lacks required column(s) amount, currency" in run.failure.reason
    s = status(table, run.run_id)
    assert s is not None and s.complete and s.state == "failed" and s.completed_at is not None
    assert _report(bucket, run)["failure"]["reason"] == run.failure.reason
    assert {"amount", "currency"} <= set(REQUIRED_COLUMNS)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (bytes(range(256)) * 8, "the file's first line is not a CSV header of UTF-8 text (is"),
        (b",".join(b"column_%d" % i for i in range(200)) + b"\n1\n", "... (200 columns)"),
    ],
)
def test_a_file_that_is_no_csv_fails_with_a_short_readable_reason(
    bucket: LocalObjectStore, table: RunStore, content: bytes, reason: str
) -> None:
    # GIVEN a binary file named .csv, or a header of 200 unknown columns
    bucket.put("raw/transactions/day.csv", content)
    # WHEN it is ingested THEN the run failed with a reason that quotes no raw bytes and
    # stays short enough to read
    run = _ingest(bucket, table, "raw/transactions/day.csv")
    assert run.failure is not None and reason in run.failure.reason
    # (at most: the missing and the required columns, and 300 characters of the header)
    assert run.failure.reason.isprintable() and len(run.failure.reason) < 800


def test_an_unsupported_file_name_fails_the_run_saying_which_names_work(
    bucket: LocalObjectStore, table: RunStore
) -> None:
    # GIVEN a file named .txt
    bucket.put("raw/transactions/day.txt", b"a,b\n1,2\n")
    # WHEN it is ingested THEN its run failed, saying how to name it
    run = _ingest(bucket, table, "raw/transactions/day.txt")
    assert run.failure is not None and ".csv, .jsonl or .ndjson" in run.failure.reason
    assert _report(bucket, run)["state"] == "failed"


def test_corrupt_gzip_fails_the_run_at_once(bucket: LocalObjectStore, table: RunStore) -> None:
    # GIVEN bytes named .csv.gz that are no gzip stream
    bucket.put("raw/transactions/day.csv.gz", b"this is not gzip at all")
    # WHEN it is ingested THEN the run failed on the first attempt, naming the gzip stream
    run = _ingest(bucket, table, "raw/transactions/day.csv.gz")
    assert run.failure is not None and run.failure.attempts == 1
    assert "gzip stream breaks at data row 1" in run.failure.reason
    s = status(table, run.run_id)
    assert s is not None and s.state == "failed" and s.run.chunks == 0


def test_a_file_that_breaks_midway_names_the_row_and_completes_after_its_sent_chunks(
    tmp_path: Path, bucket: LocalObjectStore, table: RunStore
) -> None:
    # GIVEN a CSV whose 5th data row holds a field over the csv module's size limit
    lines = _csv(tmp_path, 6).decode().splitlines(keepends=True)
    body = lines[5].rstrip("\r\n")
    lines[5] = body + "x" * (csv.field_size_limit() + 1) + lines[5][len(body) :]
    bucket.put("raw/transactions/day.csv", "".join(lines).encode())
    queue = ListQueue()
    # WHEN it is ingested (2 rows a chunk)
    run = _ingest(bucket, table, "raw/transactions/day.csv", queue)
    # THEN the two chunks before the break went on, and the reason names row 5 (line 6)
    assert len(queue.bodies) == 2 and (run.rows, run.chunks) == (4, 2)
    assert run.failure is not None
    assert "breaks at data row 5 (line 6, counting the header)" in run.failure.reason
    assert "field larger than field limit" in run.failure.reason
    # AND the run is failed but not yet completed: its sent chunks have no outcome yet
    s = status(table, run.run_id)
    assert s is not None and s.state == "running" and s.run.failure is not None
    # WHEN both sent chunks are stored
    for chunk in (0, 1):
        done = table.record(run.run_id, "store", chunk, {"stored": 2})
        settle(table, run.run_id, done, lambda _b: bucket)
    # THEN the run completes as failed
    s = status(table, run.run_id)
    assert s is not None and s.state == "failed" and s.completed_at is not None


def test_a_missing_object_fails_the_run_saying_what_to_check(
    bucket: LocalObjectStore, table: RunStore
) -> None:
    # GIVEN an event for an object deleted before ingest read it
    # WHEN it is ingested THEN the run failed at once, saying the object could not be read
    run = _ingest(bucket, table, "raw/transactions/gone.csv")
    assert run.failure is not None and not run.failure.retryable
    assert "could not be read (ObjectNotFoundError" in run.failure.reason
    assert "check that it still exists" in run.failure.reason


def test_an_unavailable_store_is_retried_and_recorded_failed_on_the_last_attempt(
    tmp_path: Path, table: RunStore
) -> None:
    # GIVEN an object store that cannot be reached
    flaky = FlakyStore(tmp_path / "flaky", bucket=BUCKET)
    key = "raw/transactions/day.csv"
    rid = run_id(BUCKET, key, "e1")
    # WHEN the trigger invokes ingest for the event: the first tries raise for a retry
    for _ in range(ATTEMPTS - 1):
        with pytest.raises(ConnectionResetError):
            _ingest(flaky, table, key)
        s = status(table, rid)
        assert s is not None and s.run.failure is None and s.state == "running"
    # AND the last one records the run failed, and still raises (to the on-failure queue)
    with pytest.raises(ConnectionResetError):
        _ingest(flaky, table, key)
    # THEN the run completed as failed, retryable, after all attempts
    s = status(table, rid)
    assert s is not None and s.state == "failed" and s.run.failure is not None
    assert s.run.failure.retryable and s.run.failure.attempts == ATTEMPTS
    assert "failed on each of 3 attempt(s)" in s.run.failure.reason


def test_a_failed_run_uploaded_again_changes_nothing(
    bucket: LocalObjectStore, table: RunStore
) -> None:
    # GIVEN a run that failed for a corrupt gzip
    bucket.put("raw/transactions/day.csv.gz", b"not gzip")
    first = _ingest(bucket, table, "raw/transactions/day.csv.gz")
    # WHEN the same event arrives again
    again = _ingest(bucket, table, "raw/transactions/day.csv.gz")
    # THEN it is the same failed run, untouched
    assert again == first


def test_a_good_gzip_csv_is_ingested_whole(
    tmp_path: Path, bucket: LocalObjectStore, table: RunStore
) -> None:
    # GIVEN a well-formed gzip CSV of 5 rows
    bucket.put("raw/transactions/day.csv.gz", gzip.compress(_csv(tmp_path, 5)))
    queue = ListQueue()
    # WHEN it is ingested THEN every row leaves in chunks and the run has no failure
    run = _ingest(bucket, table, "raw/transactions/day.csv.gz", queue)
    assert (run.rows, run.chunks, run.failure) == (5, 3, None)
    assert len(queue.bodies) == 3


class ReportRefusingStore(LocalObjectStore):
    """A bucket that refuses the first put of a run report."""

    refused = False

    def put(self, key: str, data: bytes, **kw: Any) -> Any:
        if key.endswith("/report.json") and not self.refused:
            self.refused = True
            raise ConnectionResetError("bucket unavailable")
        return super().put(key, data, **kw)


def test_a_completion_that_failed_after_ingest_is_finished_by_the_retry(
    tmp_path: Path, table: RunStore
) -> None:
    # GIVEN a header-only CSV (complete as soon as ingest finishes) and a bucket that refuses
    # the first put of the run's report
    store = ReportRefusingStore(tmp_path / "b", bucket=BUCKET)
    header = _csv(tmp_path, 1).decode().splitlines(keepends=True)[0]
    store.put("raw/transactions/empty.csv", header.encode())
    # WHEN ingest reads it through but cannot complete the run, on the first try
    with pytest.raises(ConnectionResetError):
        _ingest(store, table, "raw/transactions/empty.csv")
    rid = run_id(BUCKET, "raw/transactions/empty.csv", "e1")
    s = status(table, rid)
    # THEN the run is not marked failed: the file was read
    assert s is not None and s.run.failure is None and s.completed_at is None
    # WHEN the trigger retries
    _ingest(store, table, "raw/transactions/empty.csv")
    # THEN the retry completes it, with its report
    s = status(table, rid)
    assert s is not None and s.state == "succeeded" and s.run.rows == 0
    assert json.loads(store.get(report_key(rid)))["state"] == "succeeded"
