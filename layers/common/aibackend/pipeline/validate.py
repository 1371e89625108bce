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

from aibackend.fraud.features import CURRENCY_TO_EUR
from aibackend.fraud.schema import Transaction
from aibackend.pipeline.messages import Record

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
    valid: list[Record]
    #: Each: `{"index": <row in chunk>, "reason": ..., "row": <the record as received>}`.
    quarantined: list[Record]


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
    """Check one column; returns its typed values (None where missing and optional)."""
    col = np.array([None if v == "" else v for v in raw], dtype=object)
    present = np.asarray(col != None, dtype=bool)  # noqa: E711 (element-wise)
    if rule.required:
        why.fail(~present, f"{rule.name}: missing")
    if rule.kind == "str":
        text = np.array([str(v).strip() if v is not None else "" for v in col], dtype=str)
        lengths = np.char.str_len(text) if text.size else np.zeros(0, dtype=int)
        if rule.min_len is not None:
            why.fail(present & (lengths < rule.min_len), f"{rule.name}: empty")
        if rule.max_len is not None:
            why.fail(
                present & (lengths > rule.max_len),
                f"{rule.name}: longer than {rule.max_len} characters",
            )
        if rule.name == "currency":
            known = np.isin(text, np.array(sorted(CURRENCY_TO_EUR)))
            why.fail(present & ~known, "currency: unsupported currency code")
        return [t if p else rule.default for t, p in zip(text.tolist(), present, strict=True)]
    parse = {"timestamp": _epoch, "bool": _bool}.get(rule.kind, _number)
    x = np.array([parse(v) if v is not None else math.nan for v in col], dtype=np.float64)
    why.fail(present & ~np.isfinite(x), f"{rule.name}: not a valid {rule.kind}")
    if rule.kind == "timestamp":
        why.fail(present & (x > now), f"{rule.name}: in the future")
        return [str(v).strip() if p else None for v, p in zip(col, present, strict=True)]
    if rule.kind == "int":
        why.fail(present & np.isfinite(x) & (x != np.round(x)), f"{rule.name}: not a whole number")
    _bounds(rule, x, why, present & np.isfinite(x))
    out: list[Any] = []
    for v, p in zip(x.tolist(), present.tolist(), strict=True):
        if not p or math.isnan(v):
            out.append(rule.default)
        elif rule.kind == "int":
            out.append(int(v))
        elif rule.kind == "bool":
            out.append(bool(v))
        else:
            out.append(v)
    return out


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
    records: Sequence[Record],
    *,
    now: float,
    claim: Callable[[list[str]], set[str]],
) -> ChunkResult:
    """Split a chunk into valid rows (typed, contract fields only) and quarantined rows (each
    with the first rule it breaks). `claim(ids)` claims the chunk's valid transaction ids for
    the run and returns those another chunk already holds (duplicates within the run)."""
    n = len(records)
    why = _Reasons(n)
    why.fail(np.array(["_raw" in r for r in records], dtype=bool), "row: not a JSON object")
    typed = {
        rule.name: _column(rule, [r.get(rule.name) for r in records], why, now) for rule in RULES
    }
    ids = typed["transaction_id"]
    if n:
        _duplicates_within(ids, why)
        ok = np.flatnonzero(why.ok)
        taken = claim([ids[i] for i in ok])
        why.fail(
            np.array([i in taken for i in ids], dtype=bool),
            "transaction_id: duplicate of a row in another chunk of this run",
        )
    valid = [{f: typed[f][i] for f in FIELDS} for i in np.flatnonzero(why.ok).tolist()]
    quarantined = [
        {"index": i, "reason": why.r[i], "row": records[i]}
        for i in np.flatnonzero(~why.ok).tolist()
    ]
    return ChunkResult(valid=valid, quarantined=quarantined)
