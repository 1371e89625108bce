"""Ingest: stream a raw file (CSV or JSON Lines, optionally gzip) into chunk messages.

The file is never held whole: the object is read as a stream (a file locally, the S3 body on
AWS), decompressed and decoded on the fly, and records leave in chunks of `chunk_size`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Callable, Iterator
from typing import IO, Any

from aibackend.adapters.local import LocalObjectStore
from aibackend.errors import AibError
from aibackend.pipeline.messages import ChunkMessage, Record, chunk_message
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


def read_records(raw: IO[bytes], key: str) -> Iterator[Record]:
    """Records of the file one at a time. CSV fields arrive as strings (an empty field is
    None); a JSON Lines line that is no JSON object becomes `{"_raw": line}`, which validation
    quarantines with its reason."""
    fmt, gz = _format(key)
    binary: IO[bytes] = gzip.GzipFile(fileobj=raw) if gz else raw  # type: ignore[assignment]
    text = io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="")
    if fmt == "csv":
        for row in csv.DictReader(text):
            yield {k: (v if v != "" else None) for k, v in row.items() if k is not None}
        return
    for line in text:
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            value = None
        yield value if isinstance(value, dict) else {"_raw": line.rstrip("\n")}


def chunked(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for r in records:
        chunk.append(r)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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
    with open_object(store, key) as raw:
        for n, records in enumerate(chunked(read_records(raw, key), chunk_size)):
            send(chunk_message(run_id, store.bucket, n, records, store), len(records))
            rows += len(records)
            chunks = n + 1
    return rows, chunks
