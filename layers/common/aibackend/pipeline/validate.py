"""Validate a chunk a column at a time: the fraud `Transaction` contract's limits, checked with
numpy over whole columns instead of one pydantic model per row.

The limits (lengths, ranges, currencies, which fields are required) are read from
`aibackend.fraud.schema.Transaction` itself, so the pipeline and the real-time API accept the
same transactions. The pipeline is stricter in one place: it needs `transaction_id` (to find
duplicates and to key stored rows). Columns outside the contract (e.g. the generator's labels)
are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import annotated_types as at
import numpy as np
import numpy.typing as npt

from aibackend.fraud.currencies import CURRENCY_TO_EUR
from aibackend.fraud.schema import Transaction
from aibackend.pipeline.messages import Columns, Record, row_count

Kind = Literal["str", "float", "int", "bool", "timestamp"]
_TRUE = frozenset({"1", "true", "True", "TRUE"})
_FALSE = frozenset({"0", "false", "False", "FALSE"})
#: Fields the pipeline needs although the real-time contract does not.
PIPELINE_REQUIRED = frozenset({"transaction_id"})


@dataclass(frozen=True)
class Rule:
    name: str
    kind: Kind
    required: bool
    default: Any
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    min_len: int | None = None
    max_len: int | None = None


def _kind(annotation: Any) -> Kind:
    text = str(annotation)
    for token, kind in (("datetime", "timestamp"), ("bool", "bool"), ("float", "float")):
        if token in text:
            return kind  # type: ignore[return-value]
    return "int" if "int" in text else "str"


def rules_from_contract() -> tuple[Rule, ...]:
    """One rule per field of `Transaction`, with the bounds its annotations declare."""
    rules = []
    for name, field in Transaction.model_fields.items():
        bounds: dict[str, Any] = {}
        for m in field.metadata:
            if isinstance(m, at.Gt):
                bounds["gt"] = m.gt
            elif isinstance(m, at.Ge):
                bounds["ge"] = m.ge
            elif isinstance(m, at.Le):
                bounds["le"] = m.le
            elif isinstance(m, at.MinLen):
                bounds["min_len"] = m.min_length
            elif isinstance(m, at.MaxLen):
                bounds["max_len"] = m.max_length
        required = field.is_required() or name in PIPELINE_REQUIRED
        default = None if field.is_required() else field.default
        rules.append(Rule(name, _kind(field.annotation), required, default, **bounds))
    return tuple(rules)


RULES = rules_from_contract()
FIELDS = tuple(r.name for r in RULES)


@dataclass
class ChunkResult:
    #: The valid rows as columns: the contract's fields (`FIELDS`), typed.
    valid: Columns
    #: Each: `{"index": <row in chunk>, "reason": ..., "row": <the record as received>}`.
    quarantined: list[Record]

    @property
    def valid_rows(self) -> int:
        return row_count(self.valid)


class _Reasons:
    """The first reason each row fails for ("" while it passes)."""

    def __init__(self, n: int) -> None:
        self.r: npt.NDArray[np.object_] = np.full(n, "", dtype=object)

    def fail(self, mask: npt.NDArray[np.bool_], reason: str) -> None:
        self.r[mask & (self.r == "")] = reason

    @property
    def ok(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.r == "", dtype=bool)


def _number(v: Any) -> float:
    if isinstance(v, bool):
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _epoch(v: Any) -> float:
    try:
        ts = datetime.fromisoformat(str(v))
    except ValueError:
        return math.nan
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


def _bool(v: Any) -> float:
    if isinstance(v, bool):
        return float(v)
    s = str(v).strip()
    return 1.0 if s in _TRUE else 0.0 if s in _FALSE else math.nan


def _bounds(rule: Rule, x: npt.NDArray[np.float64], why: _Reasons, present: Any) -> None:
    if rule.gt is not None:
        why.fail(present & ~(x > rule.gt), f"{rule.name}: must be greater than {rule.gt}")
    if rule.ge is not None:
        why.fail(present & ~(x >= rule.ge), f"{rule.name}: must be at least {rule.ge}")
    if rule.le is not None:
        why.fail(present & ~(x <= rule.le), f"{rule.name}: must be at most {rule.le}")


def _column(rule: Rule, raw: Sequence[Any], why: _Reasons, now: float) -> list[Any]:
    """Check one column; returns its typed values (None where missing and optional). Values of
    rows that fail are placeholders: only valid rows' values go on."""
    given = [v is not None and v != "" for v in raw]
    present = np.array(given, dtype=bool)
    if rule.required:
        why.fail(~present, f"{rule.name}: missing")
    if rule.kind == "str":
        return _text(
            rule, [str(v).strip() if p else "" for v, p in zip(raw, given, strict=True)], given, why
        )
    parse = {"timestamp": _epoch, "bool": _bool}.get(rule.kind, _number)
    x = np.array(
        [parse(v) if p else math.nan for v, p in zip(raw, given, strict=True)], dtype=np.float64
    )
    finite = np.isfinite(x)
    why.fail(present & ~finite, f"{rule.name}: not a valid {rule.kind}")
    if rule.kind == "timestamp":
        why.fail(present & (x > now), f"{rule.name}: in the future")
        return [str(v).strip() if p else None for v, p in zip(raw, given, strict=True)]
    if rule.kind == "int":
        why.fail(present & finite & (x != np.round(x)), f"{rule.name}: not a whole number")
    _bounds(rule, x, why, present & finite)
    values: list[Any] = x.tolist()
    if rule.kind == "int":
        values = [int(v) if ok else 0 for v, ok in zip(values, finite.tolist(), strict=True)]
    elif rule.kind == "bool":
        values = [v == 1.0 for v in values]
    if not finite.all():  # absent (or failing) values: the contract's default
        values = [v if ok else rule.default for v, ok in zip(values, finite.tolist(), strict=True)]
    return values


def _text(rule: Rule, text: list[str], given: list[bool], why: _Reasons) -> list[Any]:
    """A string column's checks (length, currency code) over its stripped values."""
    present = np.array(given, dtype=bool)
    lengths = np.fromiter(map(len, text), dtype=np.int64, count=len(text))
    if rule.min_len is not None:
        why.fail(present & (lengths < rule.min_len), f"{rule.name}: empty")
    if rule.max_len is not None:
        why.fail(
            present & (lengths > rule.max_len),
            f"{rule.name}: longer than {rule.max_len} characters",
        )
    if rule.name == "currency":
        known = np.array([t in CURRENCY_TO_EUR for t in text], dtype=bool)
        why.fail(present & ~known, "currency: unsupported currency code")
    if all(given):
        return text
    return [t if p else rule.default for t, p in zip(text, given, strict=True)]


def _duplicates_within(ids: list[Any], why: _Reasons) -> None:
    arr = np.array([str(i) for i in ids], dtype=object)
    candidates = np.flatnonzero(why.ok)
    _, first = np.unique(arr[candidates], return_index=True)
    repeat = np.ones(len(candidates), dtype=bool)
    repeat[first] = False
    mask = np.zeros(len(ids), dtype=bool)
    mask[candidates[repeat]] = True
    why.fail(mask, "transaction_id: duplicate within the chunk")


def validate_chunk(
    columns: Columns,
    *,
    now: float,
    claim: Callable[[list[str]], set[str]],
) -> ChunkResult:
    """Split a chunk (columns as received) into valid rows (typed, contract fields only) and
    quarantined rows (each with the first rule it breaks). `claim(ids)` claims the chunk's
    valid transaction ids for the run and returns those another chunk already holds
    (duplicates within the run)."""
    n = row_count(columns)
    why = _Reasons(n)
    absent = [None] * n
    raw = columns.get("_raw")
    if raw is not None:
        why.fail(np.array([v is not None for v in raw], dtype=bool), "row: not a JSON object")
    typed = {rule.name: _column(rule, columns.get(rule.name, absent), why, now) for rule in RULES}
    ids = typed["transaction_id"]
    if n:
        _duplicates_within(ids, why)
        taken = claim([ids[i] for i in np.flatnonzero(why.ok).tolist()])
        if taken:
            why.fail(
                np.array([i in taken for i in ids], dtype=bool),
                "transaction_id: duplicate of a row in another chunk of this run",
            )
    ok = why.ok
    if ok.all():
        valid = typed
    else:
        keep = np.flatnonzero(ok).tolist()
        valid = {name: [col[i] for i in keep] for name, col in typed.items()}
    return ChunkResult(valid=valid, quarantined=_quarantined(columns, why))


def _quarantined(columns: Columns, why: _Reasons) -> list[Record]:
    """The invalid rows as received: a line that was no JSON object as `{"_raw": line}`, any
    other row with the fields the chunk has."""
    out = []
    raw = columns.get("_raw")
    for i in np.flatnonzero(~why.ok).tolist():
        if raw is not None and raw[i] is not None:
            row: Record = {"_raw": raw[i]}
        else:
            row = {name: col[i] for name, col in columns.items() if name != "_raw"}
        out.append({"index": i, "reason": why.r[i], "row": row})
    return out
