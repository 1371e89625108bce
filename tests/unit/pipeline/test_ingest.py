"""Reading raw files as streams, chunking, and the claim check."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest

from aibackend.adapters.local import LocalObjectStore
from aibackend.fraud.generator import generate_transactions, to_records, write_csv
from aibackend.pipeline.ingest import UnsupportedFileError, ingest, read_records
from aibackend.pipeline.messages import MAX_MESSAGE_BYTES, ChunkMessage, chunk_message


def _store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "bucket", bucket="data")


def test_csv_and_jsonl_plain_or_gzip_give_the_same_records(tmp_path: Path) -> None:
    # GIVEN the same 50 transactions as CSV, CSV.gz, JSON Lines and JSON Lines.gz
    cols = generate_transactions(50, seed=3)
    write_csv(cols, tmp_path / "t.csv")
    write_csv(cols, tmp_path / "t.csv.gz")
    lines = "".join(json.dumps(r) + "\n" for r in to_records(cols)).encode()
    (tmp_path / "t.jsonl").write_bytes(lines)
    (tmp_path / "t.jsonl.gz").write_bytes(gzip.compress(lines))
    # WHEN each is read as a stream
    got = {
        name: list(read_records((tmp_path / name).open("rb"), name))
        for name in ("t.csv", "t.csv.gz", "t.jsonl", "t.jsonl.gz")
    }
    # THEN the compressed files read as the plain ones, and the ids agree across formats
    assert got["t.csv"] == got["t.csv.gz"] and got["t.jsonl"] == got["t.jsonl.gz"]
    assert [r["transaction_id"] for r in got["t.csv"]] == [
        r["transaction_id"] for r in got["t.jsonl"]
    ]
    # AND CSV gives strings with None for empty fields, JSON Lines the JSON values
    assert isinstance(got["t.csv"][0]["amount"], str)
    assert isinstance(got["t.jsonl"][0]["amount"], float)


def test_a_line_that_is_no_json_object_is_kept_for_quarantine() -> None:
    # GIVEN JSON Lines with a broken line, a JSON array and a blank line
    raw = io.BytesIO(b'{"a": 1}\n{broken\n[1, 2]\n\n{"a": 2}\n')
    # WHEN read THEN every non-blank line is a record; the bad ones keep their text
    assert list(read_records(raw, "x.jsonl")) == [
        {"a": 1},
        {"_raw": "{broken"},
        {"_raw": "[1, 2]"},
        {"a": 2},
    ]


def test_an_unknown_file_type_is_refused_with_what_to_do() -> None:
    with pytest.raises(UnsupportedFileError, match=r"\.csv, \.jsonl or \.ndjson"):
        list(read_records(io.BytesIO(b""), "raw/transactions/data.parquet"))


def test_a_chunk_too_big_for_a_message_travels_as_an_object(tmp_path: Path) -> None:
    # GIVEN a small chunk and a chunk over SQS's limit
    store = _store(tmp_path)
    records = to_records(generate_transactions(1000, seed=4))
    small = chunk_message("r1", "data", 0, records[:10], store)
    big = chunk_message("r1", "data", 1, records, store)
    # THEN the small one is inline, the big one a reference to chunks/<run>/<n>.jsonl
    assert small.records == records[:10] and small.ref is None
    assert big.records is None and big.ref == "chunks/r1/1.jsonl"
    assert len(big.model_dump_json()) < MAX_MESSAGE_BYTES
    # AND both give their records back
    assert big.load_records(store) == records == [*records[:10], *records[10:]]
    # AND a later stage's claim check does not overwrite the input it came from
    later = chunk_message("r1", "data", 1, records[:999], store, stage="valid")
    assert later.ref == "chunks/r1/valid/1.jsonl"
    assert big.load_records(store) == records


def test_a_message_carries_records_or_a_reference_not_both() -> None:
    with pytest.raises(ValueError, match="either records or ref"):
        ChunkMessage(run_id="r", bucket="b", chunk=0, records=[], ref="k")
    with pytest.raises(ValueError, match="either records or ref"):
        ChunkMessage(run_id="r", bucket="b", chunk=0)


def test_ingest_streams_the_file_into_numbered_chunks(tmp_path: Path) -> None:
    # GIVEN a 2,500-row CSV in a bucket
    store = _store(tmp_path)
    write_csv(generate_transactions(2500, seed=5), tmp_path / "f.csv")
    store.put("raw/transactions/f.csv", (tmp_path / "f.csv").read_bytes())
    sent: list[tuple[ChunkMessage, int]] = []
    # WHEN it is ingested in chunks of 1,000
    rows, chunks = ingest(
        store, "raw/transactions/f.csv", "r9", 1000, lambda m, n: sent.append((m, n))
    )
    # THEN three chunks, 1,000 + 1,000 + 500 rows, in order, together every row once
    assert (rows, chunks) == (2500, 3)
    assert [(m.chunk, n) for m, n in sent] == [(0, 1000), (1, 1000), (2, 500)]
    ids: list[Any] = [r["transaction_id"] for m, _ in sent for r in m.load_records(store)]
    assert len(ids) == len(set(ids)) == 2500
