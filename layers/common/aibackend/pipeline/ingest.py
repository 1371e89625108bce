"""Ingest: stream a raw file (CSV or JSON Lines, optionally gzip) into chunk messages.

The file is never held whole: the object is read as a stream (a file locally, the S3 body on
AWS), decompressed and decoded on the fly, and records leave in chunks of `chunk_size`, each
as columns (`messages.Columns`).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Callable, Iterator
from itertools import islice
from typing import IO, Any

from aibackend.adapters.local import LocalObjectStore
from aibackend.errors import AibError
from aibackend.pipeline.messages import (
    ChunkMessage,
    Columns,
    Record,
    chunk_message,
    from_records,
    row_count,
    to_records,
)
from aibackend.ports import ObjectStore


class UnsupportedFileError(AibError):
    status = 422
    title = "Unsupported raw file"


class _Stream(io.RawIOBase):
    """A binary stream over anything with `read(n)` (botocore's StreamingBody)."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._body.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


def open_object(store: ObjectStore, key: str) -> IO[bytes]:
    """The object as a binary stream, read as it is consumed."""
    if isinstance(store, LocalObjectStore):
        return store.path_of(key).open("rb")
    s3 = getattr(store, "_s3", None)
    if s3 is None:
        raise TypeError(f"cannot stream from {type(store).__name__}")
    body = s3.get_object(Bucket=store.bucket, Key=key)["Body"]
    return io.BufferedReader(_Stream(body), buffer_size=1 << 20)


def _format(key: str) -> tuple[str, bool]:
    name = key.lower()
    gz = name.endswith(".gz")
    base = name[:-3] if gz else name
    for suffix, fmt in ((".csv", "csv"), (".jsonl", "jsonl"), (".ndjson", "jsonl")):
        if base.endswith(suffix):
            return fmt, gz
    raise UnsupportedFileError(
        f"{key}: name the file .csv, .jsonl or .ndjson (optionally .gz) so its format is known"
    )


def read_chunks(raw: IO[bytes], key: str, size: int) -> Iterator[Columns]:
    """The file's records in chunks of `size` rows, each as columns. CSV fields arrive as
    strings (an empty field is None; a short row's missing fields too, a long row's extra
    fields are dropped); a JSON Lines line that is no JSON object comes as the `_raw` column
    (None for every other line), which validation quarantines with its reason."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    fmt, gz = _format(key)
    binary: IO[bytes] = gzip.GzipFile(fileobj=raw) if gz else raw  # type: ignore[assignment]
    text = io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="")
    if fmt == "csv":
        yield from _csv_chunks(text, size)
    else:
        yield from _jsonl_chunks(text, size)


def read_records(raw: IO[bytes], key: str) -> Iterator[Record]:
    """The file's records one at a time, as `read_chunks` reads them (for the failure path:
    finding a file's header, or the row where it breaks)."""
    for columns in read_chunks(raw, key, 1):
        yield from to_records(columns)


def _csv_chunks(text: IO[str], size: int) -> Iterator[Columns]:
    rows = csv.reader(text)
    header = next(rows, None)
    if header is None:
        return
    width = len(header)
    lines = (r if len(r) == width else (r + [""] * width)[:width] for r in rows if r)
    while chunk := list(islice(lines, size)):
        # csv gives strings; "" (an empty field) is the only false one: it becomes None
        yield {
            name: [v or None for v in col]
            for name, col in zip(header, zip(*chunk, strict=True), strict=True)
        }


def _jsonl_chunks(text: IO[str], size: int) -> Iterator[Columns]:
    lines = (line for line in text if line.strip())
    while chunk := list(islice(lines, size)):
        records: list[Record] = []
        for line in chunk:
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                value = None
            records.append(value if isinstance(value, dict) else {"_raw": line.rstrip("\n")})
        yield from_records(records)


def ingest(
    store: ObjectStore,
    key: str,
    run_id: str,
    chunk_size: int,
    send: Callable[[ChunkMessage, int], None],
) -> tuple[int, int]:
    """Stream `key` into chunk messages handed to `send(message, rows)`; returns (rows,
    chunks). Message contents are deterministic, so running it again sends the same chunks."""
    rows = chunks = 0
    jsonl = _format(key)[0] == "jsonl"  # values as parsed, for `messages.encode`'s `raw`
    with open_object(store, key) as raw:
        for n, columns in enumerate(read_chunks(raw, key, chunk_size)):
            count = row_count(columns)
            send(chunk_message(run_id, store.bucket, n, columns, store, raw=jsonl), count)
            rows += count
            chunks = n + 1
    return rows, chunks
