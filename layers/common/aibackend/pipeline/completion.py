"""Run completion, exactly once, and the run's quarantine report.

Every write that gives a chunk an outcome (`runs.record`, `runs.finish_ingest`) answers the
run's `Progress`. The call that sees the run complete, and finds it not completed yet, writes
`quarantine/<run>/report.json` (one whole put: atomic) and then marks the run completed with a
conditional write (`runs.complete`): of concurrent stages, or a redelivered chunk recording
again, exactly one marks it. The report comes first so that a run the status shows completed
always has its report, and a crash between the two leaves the run unmarked for the retried
message to finish. Two stages completing the same run at the same instant may both write the
report: the same bytes (it derives from the run and its quarantine objects alone), one put
each, and still one completion.

The report is built from the quarantine objects themselves (`quarantine/<run>/<chunk>.jsonl`,
one `{"index", "reason", "row"}` line per row, the reason `"<column>: <what is wrong>"`), read one
object at a time: counts per reason and per column, and the first row numbers per reason. A row
number is the row's place among the file's data rows, counting from 1 (in a CSV, line number
minus one for the header).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from aibackend.pipeline.runs import (
    ChunkCounts,
    Completion,
    Progress,
    RunFailure,
    RunInfo,
    RunStore,
)
from aibackend.ports import ObjectStore

StoreFor = Callable[[str], ObjectStore]
#: Row numbers kept per reason in the report.
FIRST_ROWS = 20
REPORT = "report.json"


def report_key(run_id: str) -> str:
    return f"quarantine/{run_id}/{REPORT}"


class ReasonCount(BaseModel):
    model_config = ConfigDict(frozen=True)

    count: int
    #: The first `FIRST_ROWS` row numbers (1-based data rows of the file) with this reason.
    first_rows: list[int]


class QuarantineReport(BaseModel):
    """`quarantine/<run>/report.json`: what was wrong with one file, for a person to fix."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    bucket: str
    key: str
    etag: str
    state: Literal["succeeded", "failed"]
    #: Why ingest stopped reading the file (None: it read it through).
    failure: RunFailure | None
    rows: int
    quarantined: int
    #: quarantined / rows (0 for a file without rows).
    quarantine_rate: float
    #: By reason, most frequent first (ties: by reason).
    reasons: dict[str, ReasonCount]
    #: Quarantined rows by the column their reason names (`row` for a line that is no record).
    columns: dict[str, int]
    #: The per-chunk quarantine objects, in chunk order.
    row_files: list[str]


def settle(
    runs: RunStore,
    run_id: str,
    progress: Progress | None,
    stores: StoreFor | None = None,
) -> Completion | None:
    """Complete the run if `progress` says every chunk is accounted for and no one else has;
    returns the completion this call made (None: not complete yet, or completed by another)."""
    if progress is None or not progress.complete or runs.completion(run_id) is not None:
        return None
    run = runs.get(run_id)
    if run is None:
        raise KeyError(f"run {run_id} was never started")
    store = (stores or _default_stores())(run.bucket)
    key = report_key(run_id)
    report = quarantine_report(store, run, runs.chunks(run_id))
    store.put(key, report_bytes(report), content_type="application/json")
    completion = Completion(completed_at=datetime.now(UTC), state=report.state, report_key=key)
    return completion if runs.complete(run_id, completion) else None


def quarantine_report(
    store: ObjectStore, run: RunInfo, chunks: Iterable[ChunkCounts]
) -> QuarantineReport:
    """The report of `run`, reading its quarantine objects one at a time."""
    offsets = _row_offsets(chunks)
    files = _row_files(store, run.run_id)
    reasons: Counter[str] = Counter()
    first: dict[str, list[int]] = defaultdict(list)
    for chunk, key in files:
        for line in store.get(key).splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            reason = str(item["reason"])
            reasons[reason] += 1
            if len(first[reason]) < FIRST_ROWS:
                first[reason].append(offsets.get(chunk, 0) + int(item["index"]) + 1)
    columns: Counter[str] = Counter()
    for reason, n in reasons.items():
        columns[reason.split(":", 1)[0]] += n
    rows = run.rows or 0
    quarantined = sum(reasons.values())
    return QuarantineReport(
        run_id=run.run_id,
        bucket=run.bucket,
        key=run.key,
        etag=run.etag,
        state="failed" if run.failure else "succeeded",
        failure=run.failure,
        rows=rows,
        quarantined=quarantined,
        quarantine_rate=round(quarantined / rows, 6) if rows else 0.0,
        reasons={
            r: ReasonCount(count=n, first_rows=sorted(first[r]))
            for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        },
        columns=dict(sorted(columns.items(), key=lambda kv: (-kv[1], kv[0]))),
        row_files=[key for _, key in files],
    )


def report_bytes(report: QuarantineReport) -> bytes:
    """Deterministic bytes: the same run gives the same report."""
    return json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False).encode()


def _row_offsets(chunks: Iterable[ChunkCounts]) -> dict[int, int]:
    """Data rows of the file before each chunk, from the rows ingest sent per chunk."""
    received = {c.chunk: c.counts.get("received", 0) for c in chunks if c.stage == "ingest"}
    offsets: dict[int, int] = {}
    total = 0
    for chunk in sorted(received):
        offsets[chunk] = total
        total += received[chunk]
    return offsets


def _row_files(store: ObjectStore, run_id: str) -> list[tuple[int, str]]:
    """(chunk, key) of the run's quarantine objects, in chunk order."""
    prefix = f"quarantine/{run_id}/"
    found = []
    for info in store.list(prefix):
        name = info.key.removeprefix(prefix)
        stem = name.removesuffix(".jsonl")
        if name.endswith(".jsonl") and stem.isdigit():
            found.append((int(stem), info.key))
    return sorted(found)


def _default_stores() -> StoreFor:
    from aibackend.adapters import object_store

    return object_store
