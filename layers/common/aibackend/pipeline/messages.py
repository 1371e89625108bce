"""What one stage hands the next: a chunk of records as columns, inline or by reference (claim
check).

A chunk travels column-wise, `{"amount": [...], "currency": [...], ...}`: every column a list of
the same length, row i being the i-th value of each. Stages work on whole columns (numpy, list
comprehensions) and JSON encodes and decodes a list of scalars far faster than a list of
per-row objects that repeat every field name.

Encoding: a chunk as read from a JSON Lines file goes through the standard library's encoder,
which keeps whatever the file held (NaN, Infinity, integers past 64 bits) for validation to
judge. Every other chunk (CSV fields are strings or None; validated and scored chunks hold
finite numbers, strings, booleans and None) goes through orjson: about 10 times faster, and the
same values (a float may be spelled differently, `0.0000125` for `1.25e-05`, and parses back to
the same float).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from aibackend.ports import ObjectStore

#: SQS's largest message body (256 KiB), less room for the envelope around the columns.
MAX_MESSAGE_BYTES = 256 * 1024 - 2 * 1024

Record = dict[str, Any]
#: A chunk's rows as columns: field name -> one value per row, every list the same length.
Columns = dict[str, list[Any]]


def row_count(columns: Columns) -> int:
    """Rows in `columns`; a `ValueError` naming the columns when their lengths differ."""
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"the columns of a chunk must have one length each, got {lengths}")
    return next(iter(lengths.values()), 0)


def to_records(columns: Columns) -> list[Record]:
    """The rows as one dict each, fields in column order."""
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def from_records(records: list[Record]) -> Columns:
    """Rows as columns: every field any row has, in the order first seen; None where a row has
    no such field."""
    names = list(dict.fromkeys(name for r in records for name in r))
    return {name: [r.get(name) for r in records] for name in names}


def encode(columns: Columns, *, raw: bool = False) -> bytes:
    """Columns as compact JSON (deterministic bytes for the same columns); `raw`: a chunk as
    read from a JSON Lines file, encoded by the standard library (see the module docstring)."""
    if raw:
        return json.dumps(columns, separators=(",", ":"), ensure_ascii=False).encode()
    return orjson.dumps(columns)


def jsonl(records: list[Record], *, raw: bool = False) -> bytes:
    """Records as JSON Lines, compact and key-ordered as given (deterministic bytes); `raw` as
    for `encode`."""
    if raw:
        return b"".join(
            json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
            for r in records
        )
    return b"".join([orjson.dumps(r) + b"\n" for r in records])


class ChunkMessage(BaseModel):
    """One chunk of one run. Exactly one of `columns` (inline) and `ref` (an object key in the
    data bucket holding the columns as JSON) is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1, max_length=64)
    bucket: str = Field(min_length=1)
    chunk: int = Field(ge=0)
    columns: Columns | None = None
    ref: str | None = None
    _body: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_payload(self) -> ChunkMessage:
        if (self.columns is None) == (self.ref is None):
            raise ValueError("a chunk message carries either columns or ref, not both or neither")
        if self.columns is not None:
            row_count(self.columns)
        return self

    @property
    def rows(self) -> int | None:
        """Rows of an inline chunk (None for a claim check: reading it may be what fails)."""
        return None if self.columns is None else row_count(self.columns)

    def load(self, store: ObjectStore) -> Columns:
        """The chunk's columns, fetched from the bucket when the message is a claim check."""
        if self.columns is not None:
            return self.columns
        assert self.ref is not None
        data = store.get(self.ref)
        try:
            columns = orjson.loads(data)
        except orjson.JSONDecodeError:  # a raw JSON Lines chunk may hold NaN or Infinity
            columns = json.loads(data)
        if not isinstance(columns, dict):
            raise ValueError(f"{self.ref}: a claim-checked chunk must be a JSON object of columns")
        row_count(columns)
        return columns

    def body(self) -> str:
        """The SQS message body (JSON, without the unset payload field)."""
        if self._body is None:
            self._body = self.model_dump_json(exclude_none=True)
        return self._body


def chunk_message(
    run_id: str,
    bucket: str,
    chunk: int,
    columns: Columns,
    store: ObjectStore,
    *,
    stage: str = "",
    raw: bool = False,
) -> ChunkMessage:
    """The message for a chunk: inline when it fits in an SQS message, otherwise the columns go
    to `chunks/<run>/<chunk>.json` (`chunks/<run>/<stage>/<chunk>.json` for a later stage's
    output) and the message carries that key. The key is deterministic, so a retried stage
    overwrites the same object, and never the object its own input came from. The columns are
    encoded once, for the size check and the message body or object alike (`raw` as for
    `encode`)."""
    payload = encode(columns, raw=raw)
    if len(payload) <= MAX_MESSAGE_BYTES:
        # The envelope is validated; the columns, just encoded, are not copied again.
        envelope = ChunkMessage(run_id=run_id, bucket=bucket, chunk=chunk, columns={})
        inline = envelope.model_copy(update={"columns": columns})
        head = envelope.model_dump_json(exclude={"columns", "ref"})
        inline._body = f'{head[:-1]},"columns":{payload.decode()}}}'
        return inline
    key = f"chunks/{run_id}/{stage + '/' if stage else ''}{chunk}.json"
    store.put(key, payload, content_type="application/json")
    return ChunkMessage(run_id=run_id, bucket=bucket, chunk=chunk, ref=key)


def parse_message(body: str) -> ChunkMessage:
    """A chunk message from an SQS body; a `ValueError` (pydantic's) saying what is wrong."""
    return ChunkMessage.model_validate_json(body)
