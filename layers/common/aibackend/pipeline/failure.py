"""Ingest that fails for good completes its run as failed, with a reason a person can act on.

Per error:

- **the file is wrong** (not CSV or JSON Lines by its name, a CSV header without a required
  column, a line the parser refuses, corrupt or truncated gzip, the object gone or not readable
  by ingest): retrying reads the same bytes and fails the same way, so the run is recorded
  `failed` on the first try, and the invocation succeeds (nothing is retried);
- **the object store failed** (throttling, a 5xx, a dropped connection): the invocation raises
  and the trigger retries it; on its last attempt the run is recorded `failed` the same way, and
  the event also lands in the function's on-failure queue (alarmed on AWS).

Either way the run records the rows and chunks ingest sent before the failure, so it completes
(`completion.settle`) once those chunks have an outcome: at once when none were sent.
Asynchronous invocation does not tell a function which attempt it is on, so the run table counts
them (`RunStore.count_attempt`).
"""

from __future__ import annotations

import csv
import gzip
import zlib
from collections.abc import Callable
from datetime import UTC, datetime

from aibackend.errors import AibError, ObjectNotFoundError
from aibackend.pipeline.completion import settle
from aibackend.pipeline.ingest import UnsupportedFileError, open_object, read_records
from aibackend.pipeline.runs import RunFailure, RunInfo, RunStore, run_id
from aibackend.pipeline.stages import ingest_object
from aibackend.pipeline.validate import RULES
from aibackend.ports import ObjectStore, Queue

StoreFor = Callable[[str], ObjectStore]
#: Columns a CSV header must name (the rest may be absent: they have defaults).
REQUIRED_COLUMNS = tuple(r.name for r in RULES if r.required)
#: S3 error codes that say the object cannot be read, however often one tries.
_S3_PERMANENT = frozenset(
    {"NoSuchKey", "NoSuchBucket", "AccessDenied", "InvalidObjectState", "403", "404"}
)


class MalformedFileError(AibError):
    status = 422
    title = "Malformed raw file"


def ingest_file(
    *,
    bucket: str,
    key: str,
    etag: str,
    stores: StoreFor,
    runs: RunStore,
    out: Queue,
    chunk_size: int,
    attempts: int,
) -> RunInfo:
    """Ingest one object (`stages.ingest_object`) and decide what a failure means.
    `attempts`: how many times the trigger invokes for one event (first try plus retries)."""
    rid = run_id(bucket, key, etag)
    run = runs.start(RunInfo(run_id=rid, bucket=bucket, key=key, etag=etag, started=_now()))
    if run.chunks is not None:
        # Read through (or failed for good) before: the same bytes change nothing. Settling
        # again finishes a completion an earlier attempt could not (it does nothing otherwise).
        finished = runs.finish_ingest(
            rid, rows=run.rows or 0, chunks=run.chunks, failure=run.failure
        )
        settle(runs, rid, finished, stores)
        return run
    attempt = runs.count_attempt(rid)
    store = stores(bucket)
    try:
        check_header(store, key)
        return ingest_object(
            bucket=bucket,
            key=key,
            etag=etag,
            stores=stores,
            runs=runs,
            out=out,
            chunk_size=chunk_size,
        )
    except Exception as e:
        if _ingested(runs, rid):
            raise  # the file was read through; completing the run failed: the retry settles it
        retryable = is_transient(e)
        if retryable and attempt < attempts:
            raise  # the trigger tries again
        reason = describe(e, store, key) if not retryable else _transient_reason(e, attempt)
        fail_run(
            runs, rid, RunFailure(reason=reason, retryable=retryable, attempts=attempt), stores
        )
        if retryable:
            raise  # the last attempt: the event goes to the on-failure queue as well
    failed = runs.get(rid)
    assert failed is not None
    return failed


def _ingested(runs: RunStore, rid: str) -> bool:
    run = runs.get(rid)
    return run is not None and run.chunks is not None


def fail_run(runs: RunStore, rid: str, failure: RunFailure, stores: StoreFor) -> None:
    """Record `failure` with what ingest sent before it; complete the run if nothing is left."""
    sent = [c for c in runs.chunks(rid) if c.stage == "ingest"]
    rows = sum(c.counts.get("received", 0) for c in sent)
    settle(runs, rid, runs.finish_ingest(rid, rows=rows, chunks=len(sent), failure=failure), stores)


#: How much of a wrong header a failure reason quotes.
MAX_NAMED = 300


def check_header(store: ObjectStore, key: str) -> None:
    """Refuse a CSV whose header lacks a required column, before any chunk leaves: every row
    would otherwise be quarantined for the same reason. (JSON Lines has no header: a record
    without a field is quarantined on its own.)"""
    if not key.lower().removesuffix(".gz").endswith(".csv"):
        return  # ingest refuses an unsupported name itself, before sending anything
    with open_object(store, key) as raw:
        first = next(read_records(raw, key), None)
    if first is None:
        return  # no rows: an empty run, complete at once
    missing = [c for c in REQUIRED_COLUMNS if c not in first]
    if not missing:
        return
    required = ", ".join(REQUIRED_COLUMNS)
    named = ", ".join(first)
    if "\ufffd" in named or not named.isprintable():  # bytes that are no UTF-8 text
        raise MalformedFileError(
            f"the file's first line is not a CSV header of UTF-8 text (is {key} a CSV file?); "
            f"its header must name {required}"
        )
    if len(named) > MAX_NAMED:
        named = named[:MAX_NAMED] + f"... ({len(first)} columns)"
    raise MalformedFileError(
        f"the CSV header lacks required column(s) {', '.join(missing)}; it names "
        f"{named or 'nothing'}; required: {required}"
    )


def is_transient(e: BaseException) -> bool:
    """Whether trying again may succeed: the store's errors, except those about the object."""
    if isinstance(e, (AibError, csv.Error, gzip.BadGzipFile, EOFError, zlib.error)):
        return False
    if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError, UnicodeError)):
        return False
    code = str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))
    return code not in _S3_PERMANENT


def describe(e: BaseException, store: ObjectStore, key: str) -> str:
    """What is wrong with the file, where, and what to do."""
    if isinstance(e, (UnsupportedFileError, MalformedFileError)):
        return f"{e}; fix the file and upload it again"
    unreadable = (ObjectNotFoundError, FileNotFoundError, PermissionError, IsADirectoryError)
    if isinstance(e, unreadable) or _s3_code(e):
        return (
            f"s3://{store.bucket}/{key} could not be read ({_s3_code(e) or type(e).__name__}: "
            f"{e}); check that it still exists and that ingest may read it, then upload it again"
        )
    return f"{locate_break(store, key, e)}; fix the file and upload it again"


def locate_break(store: ObjectStore, key: str, error: BaseException) -> str:
    """Read the file again up to where it breaks (only on this failure path) to say after
    which data row: a person can open the file there."""
    rows = 0
    try:
        with open_object(store, key) as raw:
            for _ in read_records(raw, key):
                rows += 1
    except Exception as again:
        error = again
    kind = "gzip stream" if isinstance(error, (gzip.BadGzipFile, EOFError, zlib.error)) else "file"
    line = f" (line {rows + 2}, counting the header)" if ".csv" in key.lower() else ""
    return (
        f"the {kind} breaks at data row {rows + 1:,}{line}, after {rows:,} readable rows: "
        f"{type(error).__name__}: {error}"
    )


def _transient_reason(e: BaseException, attempts: int) -> str:
    return (
        f"the object store failed on each of {attempts} attempt(s), last with "
        f"{type(e).__name__}: {e}; upload the file again (or redrive the event from the "
        "ingest function's on-failure queue) once the store answers"
    )


def _s3_code(e: BaseException) -> str:
    code = str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))
    return code if code in _S3_PERMANENT else ""


def _now() -> datetime:
    return datetime.now(UTC)
