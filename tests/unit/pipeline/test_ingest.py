"""Reading raw files as streams, chunking, and the claim check."""

from __future__ import annotations

import gzip
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from aibackend.adapters.local import LocalObjectStore
from aibackend.fraud.generator import generate_transactions, to_records, write_csv
from aibackend.pipeline.ingest import UnsupportedFileError, ingest, read_chunks, read_records
from aibackend.pipeline.messages import (
    MAX_MESSAGE_BYTES,
    ChunkMessage,
    chunk_message,
    from_records,
    parse_message,
)


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


def test_chunks_are_columns_of_the_same_records(tmp_path: Path) -> None:
    # GIVEN 50 transactions as CSV, with a short row and a blank line at the end
    write_csv(generate_transactions(50, seed=3), tmp_path / "t.csv")
    with (tmp_path / "t.csv").open("a") as f:
        f.write("txn-short,card-1\n\n")
    records = list(read_records((tmp_path / "t.csv").open("rb"), "t.csv"))
    # WHEN read in chunks of 20
    chunks = list(read_chunks((tmp_path / "t.csv").open("rb"), "t.csv", 20))
    # THEN three chunks of 20, 20 and 11 rows, each the columns of those records
    assert [len(c["transaction_id"]) for c in chunks] == [20, 20, 11]
    assert chunks[1] == from_records(records[20:40])
    # ... the short row's missing fields None, like empty ones
    assert (records[-1]["transaction_id"], records[-1]["amount"]) == ("txn-short", None)


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
    columns = from_records(to_records(generate_transactions(5000, seed=4)))
    head = {name: values[:10] for name, values in columns.items()}
    small = chunk_message("r1", "data", 0, head, store)
    big = chunk_message("r1", "data", 1, columns, store)
    # THEN the small one is inline, the big one a reference to chunks/<run>/<n>.json
    assert small.columns == head and small.ref is None
    assert big.columns is None and big.ref == "chunks/r1/1.json"
    assert len(big.body()) < MAX_MESSAGE_BYTES
    # AND both bodies parse back, and give their columns back
    for m in (small, big):
        assert parse_message(m.body()).model_dump() == m.model_dump()
    assert parse_message(small.body()).load(store) == head
    assert big.load(store) == columns
    # AND a later stage's claim check does not overwrite the input it came from
    later = chunk_message("r1", "data", 1, columns, store, stage="valid")
    assert later.ref == "chunks/r1/valid/1.json"
    assert big.load(store) == columns


def test_a_message_carries_records_or_a_reference_not_both() -> None:
    with pytest.raises(ValueError, match="either columns or ref"):
        ChunkMessage(run_id="r", bucket="b", chunk=0, columns={}, ref="k")
    with pytest.raises(ValueError, match="either columns or ref"):
        ChunkMessage(run_id="r", bucket="b", chunk=0)


def test_a_message_whose_columns_differ_in_length_is_refused() -> None:
    with pytest.raises(ValueError, match="one length each"):
        parse_message('{"run_id": "r", "bucket": "b", "chunk": 0, "columns": {"a": [1], "b": []}}')


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
    ids: list[Any] = [i for m, _ in sent for i in m.load(store)["transaction_id"]]
    assert len(ids) == len(set(ids)) == 2500


def test_json_lines_values_beyond_strict_json_reach_validation_as_the_file_held_them(
    tmp_path: Path,
) -> None:
    # GIVEN a JSON Lines file whose amounts are NaN and an integer past 64 bits
    store = _store(tmp_path)
    store.put(
        "raw/transactions/odd.jsonl",
        b'{"amount": NaN}\n{"amount": 1e400}\n{"amount": 1' + b"0" * 30 + b"}\n",
    )
    sent: list[ChunkMessage] = []
    # WHEN it is ingested and the message body parsed back, as the validate stage does
    ingest(store, "raw/transactions/odd.jsonl", "r1", 10, lambda m, _n: sent.append(m))
    (amounts,) = [parse_message(m.body()).load(store)["amount"] for m in sent]
    # THEN the values are those the file held (not nulls), for validation to quarantine as such
    assert math.isnan(amounts[0]) and amounts[1] == math.inf and amounts[2] == 10**30
