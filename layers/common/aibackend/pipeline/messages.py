"""What one stage hands the next: a chunk of records, inline or by reference (claim check)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aibackend.ports import ObjectStore

#: SQS's largest message body (256 KiB), less room for the envelope around the records.
MAX_MESSAGE_BYTES = 256 * 1024 - 2 * 1024

Record = dict[str, Any]


class ChunkMessage(BaseModel):
    """One chunk of one run. Exactly one of `records` (inline) and `ref` (an object key in the
    data bucket holding the records as JSON Lines) is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1, max_length=64)
    bucket: str = Field(min_length=1)
    chunk: int = Field(ge=0)
    records: list[Record] | None = None
    ref: str | None = None

    @model_validator(mode="after")
    def _one_payload(self) -> ChunkMessage:
        if (self.records is None) == (self.ref is None):
            raise ValueError("a chunk message carries either records or ref, not both or neither")
        return self

    def load_records(self, store: ObjectStore) -> list[Record]:
        """The chunk's records, fetched from the bucket when the message is a claim check."""
        if self.records is not None:
            return self.records
        assert self.ref is not None
        return [json.loads(line) for line in store.get(self.ref).splitlines() if line.strip()]


def jsonl(records: list[Record]) -> bytes:
    """Records as JSON Lines, compact and key-ordered as given (deterministic bytes)."""
    return b"".join(
        json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode() + b"\n" for r in records
    )


def chunk_message(
    run_id: str,
    bucket: str,
    chunk: int,
    records: list[Record],
    store: ObjectStore,
    *,
    stage: str = "",
) -> ChunkMessage:
    """The message for a chunk: inline when it fits in an SQS message, otherwise the records go
    to `chunks/<run>/<chunk>.jsonl` (`chunks/<run>/<stage>/<chunk>.jsonl` for a later stage's
    output) and the message carries that key. The key is deterministic, so a retried stage
    overwrites the same object, and never the object its own input came from."""
    inline = ChunkMessage(run_id=run_id, bucket=bucket, chunk=chunk, records=records)
    if len(inline.model_dump_json().encode()) <= MAX_MESSAGE_BYTES:
        return inline
    key = f"chunks/{run_id}/{stage + '/' if stage else ''}{chunk}.jsonl"
    store.put(key, jsonl(records), content_type="application/x-ndjson")
    return ChunkMessage(run_id=run_id, bucket=bucket, chunk=chunk, ref=key)
