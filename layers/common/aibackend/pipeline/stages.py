"""The stages' handlers, free of Lambda: each takes its input and its ports.

Queue stages (validate, score, store) see one SQS record at a time under Powertools' batch
processor: a record that raises is reported alone in `batchItemFailures` and comes back after
the visibility timeout. On its last receive (`ApproximateReceiveCount` reaching the queue's
`max_receive_count`, after which SQS moves it to the DLQ) the stage records the chunk's rows as
`failed`, so the run's status still adds up and completes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aibackend.pipeline.completion import settle
from aibackend.pipeline.ingest import ingest
from aibackend.pipeline.messages import (
    ChunkMessage,
    Columns,
    chunk_message,
    jsonl,
    parse_message,
    row_count,
)
from aibackend.pipeline.runs import RunInfo, RunStore, Stage, run_id
from aibackend.pipeline.score import suspected_events
from aibackend.pipeline.store import store_chunk
from aibackend.pipeline.validate import validate_chunk
from aibackend.ports import EventBus, ObjectStore, Queue

StoreFor = Callable[[str], ObjectStore]


def quarantine_key(run: str, chunk: int) -> str:
    return f"quarantine/{run}/{chunk}.jsonl"


def ingest_object(
    *,
    bucket: str,
    key: str,
    etag: str,
    stores: StoreFor,
    runs: RunStore,
    out: Queue,
    chunk_size: int,
) -> RunInfo:
    """Run (or finish) the ingest of one object. A run whose ingest completed is not read
    again: the same file uploaded again is the same run and changes nothing."""
    rid = run_id(bucket, key, etag)
    run = runs.start(RunInfo(run_id=rid, bucket=bucket, key=key, etag=etag, started=_now()))
    if run.chunks is not None:
        return run

    def send(message: ChunkMessage, rows: int) -> None:
        out.send(message.body())
        runs.record(rid, "ingest", message.chunk, {"received": rows})

    rows, chunks = ingest(stores(bucket), key, rid, chunk_size, send)
    settle(runs, rid, runs.finish_ingest(rid, rows=rows, chunks=chunks), stores)
    return run.model_copy(update={"rows": rows, "chunks": chunks})


@dataclass(frozen=True)
class QueueStage:
    """Shared by the queue stages: parse the record, record the failure on its last try."""

    stage: Stage
    runs: RunStore
    max_receives: int
    #: Where the run's quarantine report goes when this failure completes it (default: the
    #: platform's object store of the run's bucket).
    stores: StoreFor | None = None

    def __call__(self, record: dict[str, Any], work: Callable[[ChunkMessage], None]) -> None:
        message = parse_message(record["body"])
        try:
            work(message)
        except Exception:
            receives = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
            if receives >= self.max_receives:
                rows = _rows_of(message, self.runs, self.stage)
                done = self.runs.record(message.run_id, self.stage, message.chunk, {"failed": rows})
                settle(self.runs, message.run_id, done, self.stores)
            raise


#: What a stage's input rows were counted as by the stage before it.
_INPUT_COUNT: dict[Stage, tuple[Stage, str]] = {
    "validate": ("ingest", "received"),
    "score": ("validate", "valid"),
    "store": ("score", "scored"),
}


def _rows_of(message: ChunkMessage, runs: RunStore, stage: Stage) -> int:
    """Rows the message carries, without reading a claim-checked chunk (it may be what fails):
    the previous stage recorded how many it sent."""
    if message.rows is not None:
        return message.rows
    before, count = _INPUT_COUNT[stage]
    recorded = runs.chunk(message.run_id, before, message.chunk)
    return 0 if recorded is None else recorded.counts[count]


def validate_message(
    message: ChunkMessage, *, stores: StoreFor, runs: RunStore, out: Queue, now: float | None = None
) -> None:
    """Quarantine the chunk's invalid rows (with reasons), send the valid ones on, record both
    counts. Everything it writes is keyed by run and chunk: a redelivery rewrites the same."""
    store = stores(message.bucket)
    result = validate_chunk(
        message.load(store),
        now=time.time() if now is None else now,
        claim=lambda ids: runs.claim_ids(message.run_id, message.chunk, ids),
    )
    if result.quarantined:
        store.put(
            quarantine_key(message.run_id, message.chunk),
            jsonl(result.quarantined, raw=True),
            content_type="application/x-ndjson",
        )
    if result.valid_rows:
        nxt = chunk_message(
            message.run_id, message.bucket, message.chunk, result.valid, store, stage="valid"
        )
        out.send(nxt.body())
    counts = {"valid": result.valid_rows, "quarantined": len(result.quarantined)}
    done = runs.record(message.run_id, "validate", message.chunk, counts)
    settle(runs, message.run_id, done, stores)


def score_message(
    message: ChunkMessage,
    *,
    stores: StoreFor,
    runs: RunStore,
    scorer: Callable[[Columns], Columns],
    out: Queue,
    bus: EventBus,
) -> None:
    """Score the chunk (`score.score_chunk`, bound into `scorer`), send the scored rows on,
    publish `Fraud Suspected` for its high-risk rows, record `scored`. A redelivery computes
    the same features (the feature table is keyed by transaction) and the same scores."""
    store = stores(message.bucket)
    rows = scorer(message.load(store))
    nxt = chunk_message(message.run_id, message.bucket, message.chunk, rows, store, stage="scored")
    events = suspected_events(message.run_id, rows)
    for start in range(0, len(events), 10):  # PutEvents takes at most 10 entries
        result = bus.put_events(events[start : start + 10])
        if result.failed_count:
            raise RuntimeError(f"event bus refused {result.failures}")
    out.send(nxt.body())
    runs.record(message.run_id, "score", message.chunk, {"scored": row_count(rows)})


def store_message(message: ChunkMessage, *, stores: StoreFor, runs: RunStore) -> list[str]:
    """Write the chunk's curated objects and record how many rows they hold."""
    store = stores(message.bucket)
    columns = message.load(store)
    keys = store_chunk(store, message.run_id, message.chunk, columns)
    done = runs.record(message.run_id, "store", message.chunk, {"stored": row_count(columns)})
    settle(runs, message.run_id, done, stores)
    return keys


def _now() -> datetime:
    return datetime.now(UTC)
