"""Mergeable profiles of batches of inferences, and the hour/day windows they merge into.

A `Profile` summarizes a batch: per numeric feature a KLL quantile sketch plus exact count,
nulls, mean, variance, min and max; per categorical feature exact counts (a frequent-items
sketch past `max_exact` distinct values, see `sketches.Frequencies`); the prediction (score
sketch, predicted-class counts); and, once labels arrive, per-group confusion counts.

Profiles merge in any order: counts add exactly, moments merge with Chan et al.'s parallel
formula, sketches merge within their stated error. Each profile built from a batch carries one
delta id; a merged profile carries the union, and a `Window` counts a delta once however often it
is delivered. Build the id from what identifies the batch (`delta_id_for(message_id)`), not at
random, so a redelivered batch produces the same id.

Serialized form (`to_bytes`): b"AIBP", a format byte, a 4-byte big-endian header length, a JSON
header (counts, moments, exact category counts, delta ids, offsets) and the sketches' own
compact serializations.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import numpy as np

from aibackend.models.card import Feature
from aibackend.monitoring.arrays import ArrayLike, as_numeric, count_values, missing_mask
from aibackend.monitoring.confusion import ConfusionTable
from aibackend.monitoring.sketches import DEFAULT_K, DEFAULT_MAX_EXACT, Frequencies, Quantiles

MAGIC = b"AIBP"
FORMAT = 1
_HEAD = struct.Struct(">4sBI")
#: Category name for a training-matrix code outside the feature's categories.
UNKNOWN_CATEGORY = "<unknown>"


def delta_id_for(*parts: str) -> str:
    """A stable delta id from what identifies a batch (message id, request id, batch index)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ProfileSchema:
    """Which columns a profile summarizes, and the sketch parameters (equal ones merge)."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    k: int = DEFAULT_K
    max_exact: int = DEFAULT_MAX_EXACT

    def __post_init__(self) -> None:
        both = set(self.numeric) & set(self.categorical)
        if both:
            raise ValueError(f"columns declared both numeric and categorical: {sorted(both)}")
        if not self.numeric and not self.categorical:
            raise ValueError("a profile schema needs at least one numeric or categorical column")

    def to_json(self) -> dict[str, Any]:
        """What serialized profiles and delta rows store of their schema."""
        return {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "k": self.k,
            "max_exact": self.max_exact,
        }

    @classmethod
    def from_json(cls, s: Mapping[str, Any]) -> ProfileSchema:
        return cls(
            numeric=tuple(s["numeric"]),
            categorical=tuple(s["categorical"]),
            k=int(s["k"]),
            max_exact=int(s["max_exact"]),
        )

    @classmethod
    def from_features(cls, features: Sequence[Feature], **params: int) -> ProfileSchema:
        """Numeric features as numeric; boolean and categorical ones as categorical."""
        return cls(
            numeric=tuple(f.name for f in features if f.kind == "numeric"),
            categorical=tuple(f.name for f in features if f.kind != "numeric"),
            **params,
        )


class NumericColumn:
    """Exact count, nulls, mean, M2 (sum of squared deviations), min, max + a KLL sketch."""

    __slots__ = ("count", "m2", "max", "mean", "min", "nulls", "sketch")

    def __init__(self, k: int = DEFAULT_K) -> None:
        self.count = 0
        self.nulls = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.sketch = Quantiles(k)

    @property
    def std(self) -> float:
        """Population standard deviation (what `np.std` gives) of the non-missing values."""
        return math.sqrt(self.m2 / self.count) if self.count else 0.0

    def update(self, values: np.ndarray) -> None:
        """Add a float64 array in which NaN marks a missing value."""
        ok = values[~np.isnan(values)]
        self.nulls += int(values.size - ok.size)
        if ok.size:
            batch = NumericColumn.__new__(NumericColumn)
            mean = float(ok.sum()) / ok.size
            dev = ok - mean
            batch.count, batch.nulls, batch.mean = int(ok.size), 0, mean
            batch.m2 = float(dev @ dev)
            batch.min, batch.max = float(ok.min()), float(ok.max())
            self._merge_moments(batch)
            self.sketch.update(ok)

    def merge(self, other: NumericColumn) -> None:
        self.nulls += other.nulls
        self._merge_moments(other)
        self.sketch.merge(other.sketch)

    def _merge_moments(self, o: NumericColumn) -> None:
        # Chan, Golub & LeVeque (1979): pairwise update of mean and M2.
        n = self.count + o.count
        if o.count == 0:
            return
        delta = o.mean - self.mean
        self.mean += delta * o.count / n
        self.m2 += o.m2 + delta * delta * self.count * o.count / n
        self.count = n
        self.min, self.max = min(self.min, o.min), max(self.max, o.max)

    def header(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "nulls": self.nulls,
            "mean": self.mean,
            "m2": self.m2,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
        }

    @classmethod
    def from_state(cls, head: Mapping[str, Any], blob: bytes) -> NumericColumn:
        c = cls.__new__(cls)
        c.count, c.nulls = int(head["count"]), int(head["nulls"])
        c.mean, c.m2 = float(head["mean"]), float(head["m2"])
        c.min = math.inf if head["min"] is None else float(head["min"])
        c.max = -math.inf if head["max"] is None else float(head["max"])
        c.sketch = Quantiles.from_bytes(blob)
        return c


class CategoricalColumn:
    """Nulls and per-value counts of a categorical column."""

    __slots__ = ("freq", "nulls")

    def __init__(self, max_exact: int = DEFAULT_MAX_EXACT) -> None:
        self.nulls = 0
        self.freq = Frequencies(max_exact)

    @property
    def count(self) -> int:
        """Non-missing values."""
        return self.freq.total

    def update(self, values: ArrayLike, name: str) -> None:
        counts, nulls = count_values(values, name)
        self.nulls += nulls
        self.freq.update_counts(counts)

    def merge(self, other: CategoricalColumn) -> None:
        self.nulls += other.nulls
        self.freq.merge(other.freq)

    def counts(self) -> dict[str, float]:
        return self.freq.counts()


Column = NumericColumn | CategoricalColumn


@dataclass
class Profile:
    """Summary of one batch (a delta) or of a merge of deltas. See the module docstring."""

    schema: ProfileSchema
    #: A frozenset, except in a window's profile: a set the window adds to in place (a
    #: frozenset union per merge copied every id merged so far: quadratic in the deltas).
    delta_ids: AbstractSet[str]
    rows: int
    columns: dict[str, Column]
    score: NumericColumn | None = None
    predicted: CategoricalColumn | None = None
    confusion: ConfusionTable | None = None

    @classmethod
    def empty(
        cls,
        schema: ProfileSchema,
        *,
        delta_id: str | frozenset[str],
        scores: bool = True,
        predicted: bool = True,
    ) -> Profile:
        """A profile with no rows yet, to `add` batches to (a per-container accumulator that
        is flushed as one delta every N rows or seconds). `delta_id`: the delta's id, or the
        ids of the deltas whose rows it will hold (`DeltaRows.profile`)."""
        ids = frozenset({delta_id}) if isinstance(delta_id, str) else delta_id
        if not ids or not all(ids):
            raise ValueError("delta_id must be non-empty (see delta_id_for)")
        columns: dict[str, Column] = {n: NumericColumn(schema.k) for n in schema.numeric}
        columns.update({n: CategoricalColumn(schema.max_exact) for n in schema.categorical})
        return cls(
            schema=schema,
            delta_ids=ids,
            rows=0,
            columns=columns,
            score=NumericColumn(schema.k) if scores else None,
            predicted=CategoricalColumn(schema.max_exact) if predicted else None,
        )

    @classmethod
    def build(
        cls,
        frame: Mapping[str, ArrayLike],
        schema: ProfileSchema,
        *,
        delta_id: str | frozenset[str],
        scores: ArrayLike | None = None,
        predicted: ArrayLike | None = None,
    ) -> Profile:
        """Profile of a batch given as whole columns (`frame[name]`: one array per column).

        `scores` (the model's score, e.g. the positive-class probability) and `predicted` (the
        predicted class) are optional; when given they must have one value per row.
        """
        profile = cls.empty(
            schema, delta_id=delta_id, scores=scores is not None, predicted=predicted is not None
        )
        profile.add(frame, scores=scores, predicted=predicted)
        return profile

    def add(
        self,
        frame: Mapping[str, ArrayLike],
        *,
        scores: ArrayLike | None = None,
        predicted: ArrayLike | None = None,
    ) -> None:
        """Add a batch of rows to this profile in place (whole-column updates)."""
        schema = self.schema
        missing = [c for c in (*schema.numeric, *schema.categorical) if c not in frame]
        if missing:
            raise ValueError(f"frame lacks the schema's columns {missing}; it has {sorted(frame)}")
        if (self.score is None) != (scores is None) or (self.predicted is None) != (
            predicted is None
        ):
            raise ValueError(
                "every batch of a profile passes the same prediction columns (scores, predicted) "
                f"as the profile has: scores {self.score is not None}, "
                f"predicted {self.predicted is not None}"
            )
        rows = _rows(frame, schema, scores, predicted)
        for name in schema.numeric:
            self.numeric(name).update(as_numeric(frame[name], name))
        for name in schema.categorical:
            self.categorical(name).update(frame[name], name)
        if self.score is not None and scores is not None:
            self.score.update(as_numeric(scores, "scores"))
        if self.predicted is not None and predicted is not None:
            self.predicted.update(predicted, "predicted")
        self.rows += rows

    def numeric(self, name: str) -> NumericColumn:
        col = self.columns[name]
        if not isinstance(col, NumericColumn):
            raise TypeError(f"column {name!r} is categorical")
        return col

    def categorical(self, name: str) -> CategoricalColumn:
        col = self.columns[name]
        if not isinstance(col, CategoricalColumn):
            raise TypeError(f"column {name!r} is numeric")
        return col

    def merge(self, other: Profile) -> Profile:
        """A new profile of both; neither input changes. Raises if they share a delta id."""
        out = Profile.from_bytes(self.to_bytes())
        out.merge_in(other)
        return out

    def merge_in(self, other: Profile) -> None:
        """Merge `other` into this profile in place (what windows do, to avoid copies)."""
        if other.schema != self.schema:
            raise ValueError(
                f"cannot merge profiles of different schemas: {self.schema} vs {other.schema}"
            )
        shared = self.delta_ids & other.delta_ids
        if shared:
            raise ValueError(
                f"profiles share {len(shared)} delta id(s) (e.g. {min(shared)}); merging would "
                "count those rows twice: merge through a Window, which skips duplicates"
            )
        self.rows += other.rows
        if isinstance(self.delta_ids, set):
            self.delta_ids |= other.delta_ids
        else:
            self.delta_ids = frozenset(self.delta_ids) | other.delta_ids
        for name, col in self.columns.items():
            _merge_column(col, other.columns[name])
        self.score = _merge_optional(self.score, other.score)
        self.predicted = _merge_optional(self.predicted, other.predicted)
        if other.confusion is not None:
            self.confusion = (
                other.confusion if self.confusion is None else self.confusion + other.confusion
            )

    def with_confusion(self, table: ConfusionTable) -> Profile:
        """This profile with its confusion counts set (replaced) from the label ledger."""
        out = Profile.from_bytes(self.to_bytes())
        out.confusion = table
        return out

    # --- serialization ----------------------------------------------------------------

    def to_bytes(self) -> bytes:
        blobs: list[bytes] = []
        offset = 0

        def put(blob: bytes) -> list[int]:
            nonlocal offset
            blobs.append(blob)
            span = [offset, len(blob)]
            offset += len(blob)
            return span

        def numeric(col: NumericColumn) -> dict[str, Any]:
            return {**col.header(), "blob": put(col.sketch.to_bytes())}

        def categorical(col: CategoricalColumn) -> dict[str, Any]:
            counts, blob = col.freq.to_state()
            return {"nulls": col.nulls, "counts": counts, "blob": put(blob)}

        header = {
            "schema": self.schema.to_json(),
            "delta_ids": sorted(self.delta_ids),
            "rows": self.rows,
            "numeric": {n: numeric(self.numeric(n)) for n in self.schema.numeric},
            "categorical": {n: categorical(self.categorical(n)) for n in self.schema.categorical},
            "score": None if self.score is None else numeric(self.score),
            "predicted": None if self.predicted is None else categorical(self.predicted),
            "confusion": None if self.confusion is None else self.confusion.model_dump(),
        }
        head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
        return _HEAD.pack(MAGIC, FORMAT, len(head)) + head + b"".join(blobs)

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        if len(data) < _HEAD.size:
            raise ValueError(f"not a profile: {len(data)} bytes is shorter than the header")
        magic, fmt, size = _HEAD.unpack_from(data)
        if magic != MAGIC or fmt != FORMAT:
            raise ValueError(f"not a format-{FORMAT} profile (magic {magic!r}, format {fmt})")
        start = _HEAD.size + size
        h = json.loads(data[_HEAD.size : start])
        body = memoryview(data)[start:]

        def blob(span: Sequence[int]) -> bytes:
            return bytes(body[span[0] : span[0] + span[1]])

        def numeric(head: Mapping[str, Any]) -> NumericColumn:
            return NumericColumn.from_state(head, blob(head["blob"]))

        def categorical(head: Mapping[str, Any]) -> CategoricalColumn:
            col = CategoricalColumn.__new__(CategoricalColumn)
            col.nulls = int(head["nulls"])
            col.freq = Frequencies.from_state(head["counts"], blob(head["blob"]), schema.max_exact)
            return col

        schema = ProfileSchema.from_json(h["schema"])
        columns: dict[str, Column] = {n: numeric(h["numeric"][n]) for n in schema.numeric}
        columns.update({n: categorical(h["categorical"][n]) for n in schema.categorical})
        return cls(
            schema=schema,
            delta_ids=frozenset(h["delta_ids"]),
            rows=int(h["rows"]),
            columns=columns,
            score=None if h["score"] is None else numeric(h["score"]),
            predicted=None if h["predicted"] is None else categorical(h["predicted"]),
            confusion=None
            if h["confusion"] is None
            else ConfusionTable.model_validate(h["confusion"]),
        )


def profile_matrix(
    x: np.ndarray,
    features: Sequence[Feature],
    *,
    delta_id: str,
    scores: ArrayLike | None = None,
    predicted: ArrayLike | None = None,
    **params: int,
) -> Profile:
    """Profile of a model-input matrix (columns in `features` order, as
    `aibackend.fraud.features.matrix` builds it): the training baseline, or live inputs.

    Booleans (0/1) count as "true"/"false"; categorical codes become their category names
    (`UNKNOWN_CATEGORY` for a code outside the list), NaN is missing. Same columns as the
    `baseline.json` that `training.common.feature_baseline` writes, but mergeable and testable
    against live windows with sketch-based drift tests.
    """
    schema = ProfileSchema.from_features(features, **params)
    return Profile.build(
        matrix_frame(x, features), schema, delta_id=delta_id, scores=scores, predicted=predicted
    )


def matrix_frame(x: np.ndarray, features: Sequence[Feature]) -> dict[str, np.ndarray]:
    """The columns of a model-input matrix as a profile reads them: numeric ones as float64
    (NaN missing), booleans as "true"/"false", categorical codes as their names (None missing)."""
    if x.ndim != 2 or x.shape[1] != len(features):
        raise ValueError(f"expected a (n, {len(features)}) matrix, got {x.shape}")
    return {
        f.name: _decode(np.asarray(x[:, j], dtype=np.float64), f) for j, f in enumerate(features)
    }


def _decode(col: np.ndarray, f: Feature) -> np.ndarray:
    if f.kind == "numeric":
        return col
    nan = np.isnan(col)
    out = np.empty(col.shape, dtype=object)
    if f.kind == "boolean":
        out[:] = np.where(col != 0, "true", "false")
    else:
        names = np.array([*f.categories, UNKNOWN_CATEGORY], dtype=object)
        codes = np.where(nan, 0, col).astype(np.int64)
        known = (codes >= 0) & (codes < len(f.categories)) & (codes == np.where(nan, 0, col))
        out[:] = names[np.where(known, codes, len(f.categories))]
    out[nan] = None
    return out


def _rows(
    frame: Mapping[str, ArrayLike],
    schema: ProfileSchema,
    scores: ArrayLike | None,
    predicted: ArrayLike | None,
) -> int:
    named = {c: len(frame[c]) for c in (*schema.numeric, *schema.categorical)}
    if scores is not None:
        named["scores"] = len(scores)
    if predicted is not None:
        named["predicted"] = len(predicted)
    if len(set(named.values())) > 1:
        raise ValueError(f"columns differ in length: {named}")
    return next(iter(named.values()))


def _merge_column(mine: Column, theirs: Column) -> None:
    if isinstance(mine, NumericColumn) and isinstance(theirs, NumericColumn):
        mine.merge(theirs)
        return
    if isinstance(mine, CategoricalColumn) and isinstance(theirs, CategoricalColumn):
        mine.merge(theirs)
        return
    # Equal schemas rule this out; a hand-built profile could still get here.
    raise TypeError("a column is numeric in one profile and categorical in the other")


_C = TypeVar("_C", NumericColumn, CategoricalColumn)


def _merge_optional(mine: _C | None, theirs: _C | None) -> _C | None:
    if mine is None and theirs is None:
        return None
    if mine is None or theirs is None:
        raise ValueError("one profile has prediction columns and the other does not")
    mine.merge(theirs)
    return mine


# --- windows ------------------------------------------------------------------------------

Span = Literal["hour", "day"]
_SPANS: dict[str, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


@dataclass(frozen=True, order=True)
class WindowKey:
    """A UTC-aligned time window: [start, start + span)."""

    start: datetime
    span: Span

    @classmethod
    def for_time(cls, t: datetime, span: Span) -> WindowKey:
        """The window of `span` that contains `t` (naive times are taken as UTC)."""
        u = (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)
        start = u.replace(minute=0, second=0, microsecond=0)
        if span == "day":
            start = start.replace(hour=0)
        return cls(start=start, span=span)

    @property
    def end(self) -> datetime:
        return self.start + _SPANS[self.span]

    def contains(self, t: datetime) -> bool:
        return self.start <= t < self.end

    def __str__(self) -> str:
        return f"{self.span}:{self.start.isoformat()}"


@dataclass
class Window:
    """Deltas of one window merged, each counted once however often it is delivered."""

    key: WindowKey
    profile: Profile | None = None
    duplicates: int = field(default=0)

    @property
    def delta_ids(self) -> AbstractSet[str]:
        """The ids merged so far (the window's own set: read, do not change it)."""
        return frozenset() if self.profile is None else self.profile.delta_ids

    @property
    def rows(self) -> int:
        return 0 if self.profile is None else self.profile.rows

    def add(self, delta: Profile) -> bool:
        """Merge `delta` in; False (and nothing changes) when its ids were all merged before.

        A profile whose ids are partly merged already cannot be de-duplicated (its rows are
        summed), so it is refused with an error that says so.
        """
        seen = self.delta_ids & delta.delta_ids
        if seen == delta.delta_ids:
            self.duplicates += 1
            return False
        if seen:
            raise ValueError(
                f"window {self.key}: {len(seen)} of this profile's {len(delta.delta_ids)} delta "
                "ids are merged already; add the original deltas instead of a merged profile"
            )
        if self.profile is None:
            self._own(Profile.from_bytes(delta.to_bytes()))
        else:
            self.profile.merge_in(delta)
        return True

    def _own(self, profile: Profile) -> None:
        """Take `profile` as the window's, its ids in a set that merges add to in place."""
        profile.delta_ids = set(profile.delta_ids)
        self.profile = profile

    def add_rows(self, batch: DeltaRows) -> int:
        """Merge the deltas of `batch` this window has not merged (each skipped one counts as
        a duplicate), profiled together in one build; returns how many were new."""
        fresh = batch.without(self.delta_ids)
        self.duplicates += len(batch.deltas) - (0 if fresh is None else len(fresh.deltas))
        if fresh is None:
            return 0
        delta = fresh.profile()
        if self.profile is None:
            self._own(delta)  # built here, shared with no one: no copy needed
        else:
            self.profile.merge_in(delta)
        return len(fresh.deltas)

    def add_all(self, deltas: Iterable[Profile]) -> int:
        """Add each delta; returns how many were new."""
        return sum(self.add(d) for d in deltas)

    @classmethod
    def rollup(cls, key: WindowKey, windows: Iterable[Window]) -> Window:
        """A longer window (a day) from shorter ones inside it (its hours)."""
        out = cls(key=key)
        for w in windows:
            if not (key.contains(w.key.start) and w.key.end <= key.end):
                raise ValueError(f"window {w.key} is not inside {key}")
            if w.profile is not None:
                out.add(w.profile)
        return out


#: `DeltaRows.to_bytes()` starts with this (a `Profile` with b"AIBP" and a format byte).
ROWS_MAGIC = b"AIBPROWS1\n"
_LEN = struct.Struct(">I")


@dataclass(frozen=True)
class DeltaRows:
    """Small deltas kept as their rows until a window merges them.

    A capture message usually holds one prediction. As a `Profile`, a one-row delta is 1.4 KB
    of sketches and ~160 us of Python to build; as rows it is about 100 bytes, and a window
    profiles the rows of all the deltas it has not merged yet in one vectorized build
    (`Window.add_rows`). Each delta keeps its id, so a message delivered twice, in the same
    bundle or in another one, is still counted once.

    Bytes (`to_bytes`): `ROWS_MAGIC`, a 4-byte big-endian header length, a JSON header (the
    schema, `[delta id, rows]` per delta, the categorical and predicted columns), then each
    numeric column and the scores as little-endian float64 (NaN missing), in schema order.
    """

    schema: ProfileSchema
    #: (delta id, its number of rows), in the rows' order.
    deltas: tuple[tuple[str, int], ...]
    #: One array per schema column: float64 for numeric ones, object (None missing) otherwise.
    frame: Mapping[str, np.ndarray]
    scores: np.ndarray | None = None
    predicted: np.ndarray | None = None

    def __post_init__(self) -> None:
        ids = [d for d, _ in self.deltas]
        if not ids or not all(ids):
            raise ValueError("delta rows need at least one delta, each with a non-empty id")
        if len(set(ids)) != len(ids):
            raise ValueError("delta rows list a delta id twice")
        if any(n < 0 for _, n in self.deltas):
            raise ValueError("a delta cannot have a negative number of rows")
        columns = self.schema.numeric + self.schema.categorical
        absent = [c for c in columns if c not in self.frame]
        if absent:
            raise ValueError(f"delta rows lack the schema's columns {absent}")
        lengths = {c: len(self.frame[c]) for c in columns}
        if self.scores is not None:
            lengths["scores"] = len(self.scores)
        if self.predicted is not None:
            lengths["predicted"] = len(self.predicted)
        rows = self.rows
        wrong = {c: n for c, n in lengths.items() if n != rows}
        if wrong:
            raise ValueError(f"the deltas list {rows} rows but columns have {wrong}")

    @property
    def rows(self) -> int:
        return sum(n for _, n in self.deltas)

    def without(self, ids: AbstractSet[str]) -> DeltaRows | None:
        """These deltas less the ones in `ids`; None when none is left."""
        if not any(d in ids for d, _ in self.deltas):
            return self
        keep = np.zeros(self.rows, dtype=bool)
        kept, at = [], 0
        for d, n in self.deltas:
            if d not in ids:
                keep[at : at + n] = True
                kept.append((d, n))
            at += n
        if not kept:
            return None
        return DeltaRows(
            schema=self.schema,
            deltas=tuple(kept),
            frame={c: v[keep] for c, v in self.frame.items()},
            scores=None if self.scores is None else self.scores[keep],
            predicted=None if self.predicted is None else self.predicted[keep],
        )

    def profile(self) -> Profile:
        """One profile of all these rows, carrying every delta's id."""
        return Profile.build(
            self.frame,
            self.schema,
            delta_id=frozenset(d for d, _ in self.deltas),
            scores=self.scores,
            predicted=self.predicted,
        )

    def to_bytes(self) -> bytes:
        def texts(values: np.ndarray) -> list[str | None]:
            missing = missing_mask(np.asarray(values)).tolist()
            return [None if m else str(v) for v, m in zip(values.tolist(), missing, strict=True)]

        header = {
            "schema": self.schema.to_json(),
            "deltas": [list(d) for d in self.deltas],
            "categorical": {c: texts(self.frame[c]) for c in self.schema.categorical},
            "scores": self.scores is not None,
            "predicted": None if self.predicted is None else texts(self.predicted),
        }
        head = json.dumps(header, separators=(",", ":")).encode()
        numbers = [np.asarray(self.frame[c], dtype="<f8") for c in self.schema.numeric]
        if self.scores is not None:
            numbers.append(np.asarray(self.scores, dtype="<f8"))
        return b"".join([ROWS_MAGIC, _LEN.pack(len(head)), head, *(a.tobytes() for a in numbers)])

    @classmethod
    def from_bytes(cls, data: bytes) -> DeltaRows:
        if not data.startswith(ROWS_MAGIC):
            raise ValueError(f"not delta rows (starts {data[: len(ROWS_MAGIC)]!r})")
        at = len(ROWS_MAGIC)
        if len(data) < at + _LEN.size:
            raise ValueError("delta rows truncated in their header length")
        (size,) = _LEN.unpack_from(data, at)
        at += _LEN.size
        try:
            h = json.loads(data[at : at + size])
            schema = ProfileSchema.from_json(h["schema"])
            deltas = tuple((str(d), int(n)) for d, n in h["deltas"])
            texts = {c: h["categorical"][c] for c in schema.categorical}
            has_scores, predicted = bool(h["scores"]), h["predicted"]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"delta rows with a truncated or corrupt header: {e!r}") from None
        at += size
        n = sum(c for _, c in deltas)
        columns = len(schema.numeric) + int(has_scores)
        if len(data) - at != columns * n * 8:
            raise ValueError(
                f"delta rows truncated: {len(data) - at} bytes of numbers where {n} rows of "
                f"{columns} numeric columns take {columns * n * 8}"
            )
        numbers = (
            np.frombuffer(data, dtype="<f8", offset=at).reshape(columns, n)
            if columns * n
            else np.empty((columns, n))
        )
        frame: dict[str, np.ndarray] = {c: numbers[j] for j, c in enumerate(schema.numeric)}
        frame.update({c: np.array(v, dtype=object) for c, v in texts.items()})
        return cls(
            schema=schema,
            deltas=deltas,
            frame=frame,
            scores=numbers[-1] if has_scores else None,
            predicted=None if predicted is None else np.array(predicted, dtype=object),
        )


class ProfileAccumulator:
    """Rows of single predictions buffered in lists and profiled in vectorized batches.

    What an inference container keeps at module level: `append` costs a few list appends per
    prediction; every `flush_rows` rows the buffer goes into the current delta with one
    whole-column update per column, and `take` hands the delta over (to the capture consumer)
    and starts the next one. Delta ids are `delta_id_for(source, sequence)`, so `source` must
    be unique per container (e.g. the Lambda log stream name).
    """

    def __init__(
        self,
        schema: ProfileSchema,
        *,
        source: str,
        scores: bool = True,
        predicted: bool = True,
        flush_rows: int = 1024,
    ) -> None:
        if flush_rows < 1:
            raise ValueError(f"flush_rows must be >= 1, got {flush_rows}")
        self._schema = schema
        self._source = source
        self._has = (scores, predicted)
        self._flush_rows = flush_rows
        self._names = (*schema.numeric, *schema.categorical)
        self._sequence = 0
        self._buffer: dict[str, list[Any]] = {}
        self._profile = self._next()

    def _next(self) -> Profile:
        self._buffer = {name: [] for name in (*self._names, "score", "predicted")}
        delta_id = delta_id_for(self._source, str(self._sequence))
        self._sequence += 1
        scores, predicted = self._has
        return Profile.empty(self._schema, delta_id=delta_id, scores=scores, predicted=predicted)

    @property
    def rows(self) -> int:
        """Rows in the current delta, buffered or not."""
        return self._profile.rows + len(self._buffer[self._names[0]])

    def append(
        self, row: Mapping[str, Any], *, score: float | None = None, predicted: Any = None
    ) -> None:
        """Add one prediction's features (missing keys count as missing values)."""
        buffer = self._buffer
        for name in self._names:
            buffer[name].append(row.get(name))
        if self._has[0]:
            buffer["score"].append(score)
        if self._has[1]:
            buffer["predicted"].append(predicted)
        if len(buffer[self._names[0]]) >= self._flush_rows:
            self._drain()

    def _drain(self) -> None:
        b = self._buffer
        if not b[self._names[0]]:
            return
        frame = {n: _column_array(b[n], n in self._schema.numeric) for n in self._names}
        self._profile.add(
            frame,
            scores=np.array(b["score"], dtype=np.float64) if self._has[0] else None,
            predicted=np.array(b["predicted"], dtype=object) if self._has[1] else None,
        )
        for values in b.values():
            values.clear()

    def take(self) -> Profile | None:
        """The current delta with everything appended so far (None if empty); starts a new one."""
        self._drain()
        done, self._profile = self._profile, self._next()
        return done if done.rows else None


def _column_array(values: list[Any], numeric: bool) -> np.ndarray:
    if numeric:
        return np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    return np.array(values, dtype=object)
