"""Interaction files: what is accepted, errors that name the file, line, column and fix,
and the per-user split by time."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from aibackend.recommend.interactions import read_interactions, split_by_time
from aibackend.training.common import TrainingError


def _csv(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_every_column_with_iso_and_unix_timestamps(tmp_path: Path) -> None:
    # GIVEN a file with extra columns, a byte-order mark, both time formats and a blank line
    path = _csv(
        tmp_path,
        "\ufeffsession,user_id,item_id,rating,timestamp\n"
        "s1,u1,i1,4,2026-01-01T00:00:00Z\n"
        "\n"
        "s2,u2,i2,2.5,1767225600\n"
        "s3,u1,i2,5,2026-01-01T01:00:00+01:00\n",
    )
    data = read_interactions([path])
    # THEN ids are coded in order of first appearance and times are UTC Unix seconds
    assert data.user_ids == ("u1", "u2") and data.item_ids == ("i1", "i2")
    assert data.user.tolist() == [0, 1, 0] and data.item.tolist() == [0, 1, 1]
    assert data.rating is not None and data.rating.tolist() == [4.0, 2.5, 5.0]
    assert data.time.tolist() == [1767225600.0] * 3
    assert data.has_time


def test_rating_and_timestamp_are_optional_and_gzip_is_read(tmp_path: Path) -> None:
    path = tmp_path / "data.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("user_id,item_id\nu1,i1\nu1,i2\n")
    data = read_interactions([path])
    # THEN without timestamps the rows count as in time order
    assert data.rating is None and not data.has_time
    assert data.time.tolist() == [0.0, 1.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"data\.csv: empty file; it needs a header row"),
        ("user_id,item_id\n", r"no interactions after the header"),
        ("user,item_id\nu1,i1\n", r"missing column\(s\) user_id in the header \(user,item_id\)"),
        ("user_id,product\nu1,i1\n", r"missing column\(s\) item_id"),
        (
            "user_id,item_id,rating\nu1,i1,4\nu1,i2,five\n",
            r"data\.csv, line 3, column 'rating': 'five' is not a number; write ratings as "
            r"numbers",
        ),
        ("user_id,item_id,rating\nu1,i1,nan\n", r"line 2, column 'rating': 'nan' is not a number"),
        ("user_id,item_id,rating\nu1,i1,\n", r"line 2, column 'rating': '' is not a number"),
        (
            "user_id,item_id,timestamp\nu1,i1,2026-01-01\nu1,i2,yesterday\n",
            r"line 3, column 'timestamp': 'yesterday' is not a time; write ISO 8601",
        ),
        ("user_id,item_id\nu1,i1\nu2\n", r"line 3: 1 fields, but the header has 2"),
        ("user_id,item_id\nu1, \n", r"line 2: empty item_id; every row needs one"),
    ],
    ids=[
        "empty-file",
        "header-only",
        "no-user-column",
        "no-item-column",
        "word-rating",
        "nan-rating",
        "empty-rating",
        "bad-timestamp",
        "short-line",
        "empty-item",
    ],
)
def test_bad_files_name_the_problem_and_the_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        read_interactions([_csv(tmp_path, text)])


def test_files_must_agree_on_their_optional_columns(tmp_path: Path) -> None:
    a = _csv(tmp_path, "user_id,item_id,rating\nu1,i1,3\n", "a.csv")
    b = _csv(tmp_path, "user_id,item_id\nu1,i2\n", "b.csv")
    with pytest.raises(
        TrainingError,
        match=r"b\.csv: has neither rating nor timestamp but a\.csv has column\(s\) rating",
    ):
        read_interactions([a, b])


def test_text_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("user_id,item_id\nJosé,i1\n".encode("latin-1"))
    with pytest.raises(TrainingError, match="not UTF-8 text"):
        read_interactions([path])


def test_split_holds_out_each_users_latest_interactions(tmp_path: Path) -> None:
    # GIVEN u1 with 10 interactions written out of time order, u2 with 2, u3 with 1
    lines = ["user_id,item_id,timestamp"]
    lines += [f"u1,i{t},{1000 + t}" for t in (9, 0, 8, 1, 7, 2, 6, 3, 5, 4)]
    lines += ["u2,i0,50", "u2,i1,40", "u3,i0,10"]
    data = read_interactions([_csv(tmp_path, "\n".join(lines) + "\n")])
    split = split_by_time(data, 0.2)
    held = data.subset(split.holdout)
    # THEN u1's two latest (20%), u2's latest (at least one), and none of u3's are held out
    got = sorted(zip(held.user.tolist(), held.time.tolist(), strict=True))
    assert got == [(0, 1008.0), (0, 1009.0), (1, 50.0)]
    # AND every row is in exactly one part
    both = np.concatenate([split.train, split.holdout])
    assert sorted(both.tolist()) == list(range(len(data)))


def test_split_refuses_a_fraction_outside_zero_and_one(tmp_path: Path) -> None:
    data = read_interactions([_csv(tmp_path, "user_id,item_id\nu1,i1\n")])
    with pytest.raises(TrainingError, match=r"holdout_fraction must be in \(0, 1\)"):
        split_by_time(data, 1.0)
