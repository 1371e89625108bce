"""Interaction files (`user_id,item_id[,rating,timestamp]` CSV) read, checked and split by time.

Any CSV with a header naming `user_id` and `item_id` works; `rating` (a number) and
`timestamp` (ISO 8601, e.g. `2026-01-31T12:00:00Z`, or Unix seconds) are optional, and
other columns are ignored. Without timestamps, a user's rows count as being in time order.
Every problem is a `TrainingError` naming the file, line and column, and how to fix it.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import numpy as np

from aibackend.training.common import TrainingError

REQUIRED = ("user_id", "item_id")
OPTIONAL = ("rating", "timestamp")
EXAMPLE = "user_id,item_id,rating,timestamp\\nu1,i42,4,2026-01-31T12:00:00Z"


@dataclass(frozen=True)
class Interactions:
    """Parallel arrays, one entry per interaction row, in file order."""

    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    #: int64 indices into `user_ids` / `item_ids`.
    user: np.ndarray
    item: np.ndarray
    #: float64 ratings, or None when the files have no `rating` column.
    rating: np.ndarray | None
    #: float64 Unix seconds (UTC); the row number when the files have no `timestamp` column.
    time: np.ndarray
    has_time: bool

    def __len__(self) -> int:
        return int(self.user.size)

    def subset(self, rows: np.ndarray) -> Interactions:
        """The interactions at `rows` (same vocabularies)."""
        return Interactions(
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            user=self.user[rows],
            item=self.item[rows],
            rating=None if self.rating is None else self.rating[rows],
            time=self.time[rows],
            has_time=self.has_time,
        )


@dataclass
class _Columns:
    users: list[str]
    items: list[str]
    ratings: list[float]
    times: list[float]


def read_interactions(files: Sequence[Path]) -> Interactions:
    """Read and check interaction CSVs (`.csv` or `.csv.gz`); every file needs the columns the
    first has among `rating` and `timestamp`."""
    if not files:
        raise TrainingError("no interaction files given")
    cols = _Columns([], [], [], [])
    optional: tuple[bool, bool] | None = None
    for path in files:
        got = _read_file(path, cols)
        if optional is not None and got != optional:
            raise TrainingError(
                f"{path}: has {_describe(got)} but {files[0].name} has {_describe(optional)}; "
                "give every file the same columns"
            )
        optional = got
    assert optional is not None
    has_rating, has_time = optional
    if not cols.users:
        names = ", ".join(p.name for p in files)
        raise TrainingError(
            f"{names}: no interactions after the header; add one row per interaction"
        )
    user_ids, user = _codes(cols.users)
    item_ids, item = _codes(cols.items)
    n = len(cols.users)
    return Interactions(
        user_ids=user_ids,
        item_ids=item_ids,
        user=user,
        item=item,
        rating=np.asarray(cols.ratings, dtype=np.float64) if has_rating else None,
        time=np.asarray(cols.times, dtype=np.float64)
        if has_time
        else np.arange(n, dtype=np.float64),
        has_time=has_time,
    )


def _describe(optional: tuple[bool, bool]) -> str:
    present = [name for name, has in zip(OPTIONAL, optional, strict=True) if has]
    return f"column(s) {', '.join(present)}" if present else "neither rating nor timestamp"


@contextmanager
def _open(path: Path) -> Iterator[TextIO]:
    # utf-8-sig: spreadsheets often save a byte-order mark before the header.
    if path.name.endswith(".gz"):
        with gzip.open(path, "rt", newline="", encoding="utf-8-sig") as f:
            yield f
    else:
        with path.open("r", newline="", encoding="utf-8-sig") as f:
            yield f


def _read_file(path: Path, cols: _Columns) -> tuple[bool, bool]:
    """Append `path`'s rows to `cols`; returns (has rating, has timestamp)."""
    try:
        with _open(path) as f:
            return _read_rows(path, f, cols)
    except UnicodeDecodeError as e:
        raise TrainingError(
            f"{path}: not UTF-8 text ({e.reason}); save the file as UTF-8 CSV"
        ) from None
    except (OSError, EOFError, csv.Error) as e:
        raise TrainingError(f"{path}: cannot read it as CSV ({e})") from None


def _read_rows(path: Path, f: TextIO, cols: _Columns) -> tuple[bool, bool]:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None:
        raise TrainingError(
            f"{path}: empty file; it needs a header row and one row per interaction, e.g. {EXAMPLE}"
        )
    names = [h.strip() for h in header]
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise TrainingError(
            f"{path}: missing column(s) {', '.join(missing)} in the header "
            f"({','.join(names)}); the header must name user_id and item_id "
            "(rating and timestamp are optional), e.g. " + EXAMPLE
        )
    ui, ii = names.index("user_id"), names.index("item_id")
    ri = names.index("rating") if "rating" in names else None
    ti = names.index("timestamp") if "timestamp" in names else None
    width = len(names)
    for line, row in enumerate(reader, start=2):
        if not row:
            continue  # a blank line
        if len(row) != width:
            raise TrainingError(
                f"{path}, line {line}: {len(row)} fields, but the header has {width}; "
                "quote values that contain commas"
            )
        user, item = row[ui].strip(), row[ii].strip()
        for name, value in (("user_id", user), ("item_id", item)):
            if not value:
                raise TrainingError(f"{path}, line {line}: empty {name}; every row needs one")
        cols.users.append(user)
        cols.items.append(item)
        if ri is not None:
            cols.ratings.append(_rating(path, line, row[ri]))
        if ti is not None:
            cols.times.append(_timestamp(path, line, row[ti]))
    return ri is not None, ti is not None


def _rating(path: Path, line: int, raw: str) -> float:
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise TrainingError(
            f"{path}, line {line}, column 'rating': {raw!r} is not a number; write ratings as "
            "numbers (e.g. 4 or 4.5), or drop the rating column"
        )
    return value


def _timestamp(path: Path, line: int, raw: str) -> float:
    text = raw.strip()
    try:
        return _epoch(text)
    except ValueError:
        raise TrainingError(
            f"{path}, line {line}, column 'timestamp': {raw!r} is not a time; write ISO 8601 "
            "(2026-01-31T12:00:00Z; no offset means UTC) or Unix seconds (1769860800), or "
            "drop the timestamp column"
        ) from None


def _epoch(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        ts = datetime.fromisoformat(text)
        return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _codes(values: list[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """(distinct values in order of first appearance, index of each value)."""
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), np.int64, len(values))
    return tuple(index), codes


@dataclass(frozen=True)
class TimeSplit:
    """Row indices of a per-user split by time: each user's latest rows are held out."""

    train: np.ndarray
    holdout: np.ndarray


def split_by_time(data: Interactions, holdout_fraction: float) -> TimeSplit:
    """Hold out the latest `holdout_fraction` of each user's interactions (at least one, for
    users with two or more; users with one interaction stay in training), ties in time kept
    in file order."""
    if not 0.0 < holdout_fraction < 1.0:
        raise TrainingError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    order = np.lexsort((np.arange(len(data)), data.time, data.user))
    user = data.user[order]
    counts = np.bincount(user, minlength=len(data.user_ids))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(order.size) - starts[user]
    held = np.where(counts >= 2, np.maximum(1, np.rint(counts * holdout_fraction)), 0)
    held = np.clip(held, 0, np.maximum(counts - 1, 0)).astype(np.int64)
    is_holdout = position >= counts[user] - held[user]
    return TimeSplit(train=np.sort(order[~is_holdout]), holdout=np.sort(order[is_holdout]))
