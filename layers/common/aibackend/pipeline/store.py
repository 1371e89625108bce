"""Store: curated rows as JSON Lines, one object per date and chunk.

`curated/transactions/date=YYYY-MM-DD/<run>-<chunk>.jsonl`: the key is deterministic per run,
chunk and date, and each object is one whole put (atomic: a reader sees all of it or none), so
a redelivered chunk overwrites the same objects with the same bytes. The date is the
transaction's UTC date.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from aibackend.pipeline.messages import Record, jsonl
from aibackend.ports import ObjectStore

CURATED = "curated/transactions"


def curated_key(date: str, run_id: str, chunk: int) -> str:
    return f"{CURATED}/date={date}/{run_id}-{chunk}.jsonl"


def utc_date(timestamp: str) -> str:
    ts = datetime.fromisoformat(timestamp)
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC).date().isoformat()


def partition(records: list[Record]) -> dict[str, list[Record]]:
    """Records by UTC date, each date's records in chunk order."""
    by_date: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_date[utc_date(r["timestamp"])].append(r)
    return dict(sorted(by_date.items()))


def store_chunk(store: ObjectStore, run_id: str, chunk: int, records: list[Record]) -> list[str]:
    """Write the chunk's curated objects; returns their keys."""
    keys = []
    for date, rows in partition(records).items():
        key = curated_key(date, run_id, chunk)
        store.put(key, jsonl(rows), content_type="application/x-ndjson")
        keys.append(key)
    return keys
