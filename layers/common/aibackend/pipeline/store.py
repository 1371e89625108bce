"""Store: curated rows as JSON Lines, one object per date and chunk.

`curated/transactions/date=YYYY-MM-DD/<run>-<chunk>.jsonl`: the key is deterministic per run,
chunk and date, and each object is one whole put (atomic: a reader sees all of it or none), so
a redelivered chunk overwrites the same objects with the same bytes. The date is the
transaction's UTC date.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from aibackend.pipeline.messages import Columns, jsonl, row_count, to_records
from aibackend.ports import ObjectStore

CURATED = "curated/transactions"


def curated_key(date: str, run_id: str, chunk: int) -> str:
    return f"{CURATED}/date={date}/{run_id}-{chunk}.jsonl"


def utc_date(timestamp: str) -> str:
    ts = datetime.fromisoformat(timestamp)
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC).date().isoformat()


def partition(columns: Columns) -> dict[str, list[int]]:
    """Row indices by UTC date, each date's rows in chunk order."""
    by_date: dict[str, list[int]] = defaultdict(list)
    for i, timestamp in enumerate(columns["timestamp"]):
        by_date[utc_date(timestamp)].append(i)
    return dict(sorted(by_date.items()))


def store_chunk(store: ObjectStore, run_id: str, chunk: int, columns: Columns) -> list[str]:
    """Write the chunk's curated objects (one JSON object per row, fields in column order);
    returns their keys."""
    if not row_count(columns):
        return []
    rows = to_records(columns)
    keys = []
    for date, indices in partition(columns).items():
        key = curated_key(date, run_id, chunk)
        store.put(key, jsonl([rows[i] for i in indices]), content_type="application/x-ndjson")
        keys.append(key)
    return keys
