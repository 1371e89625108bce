"""What each CSV column is, decided from its cells, and what the target asks for.

Per feature column, on the rows that have a target (cells trimmed; `MISSING_TOKENS` such as
"", NA, N/A, null, "-" are missing):

- **empty** (every cell missing) and **constant** (one value, no blanks): ignored.
- **boolean**: every value one of true/false, yes/no, y/n, t/f, 1/0 (any case), both seen.
- **numeric**: at least `NUMERIC_SHARE` of the values are numbers (`1,234.5`, `$12`, `12%`
  read as 1234.5, 12 and 12); the rest become missing and are reported. Digits with leading
  zeros (`02134`: codes) and integers in a column named like an id with repeats (`store_id`)
  are categorical instead; integers unique per row that count up by one row after row (a row
  number) or sit in a column named like an id are **identifiers**: ignored.
- **free text** (mean length >= `TEXT_MEAN_CHARS`, mostly distinct) and **identifier-like**
  text (>= `ID_UNIQUE_SHARE` distinct): ignored; the trainer uses no text features.
- **categorical**: everything else. The `max_categories` most frequent values seen in at least
  `min_category_rows` rows are kept; the rest, and values never seen, count as one unseen
  category at prediction time. A column with one value and blanks is categorical (the blank
  says something). Mostly-text columns with a few numbers stay categorical.

The target: rows where it is blank are dropped (reported). It is numeric when every value is a
number; `auto` makes it a regression when it has more than `MAX_AUTO_CLASSES` distinct
numbers, else a classification. Classes seen in fewer than `MIN_CLASS_ROWS` rows are dropped
(reported); at least two classes and `MIN_ROWS` rows must remain.
"""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from aibackend.byom.contract import MISSING_TOKENS
from aibackend.byom.training.csvfile import Table
from aibackend.training.common import TrainingError

Kind = Literal["numeric", "boolean", "categorical"]
Task = Literal["binary_classification", "multiclass_classification", "regression"]
TaskChoice = Literal["auto", "classification", "regression"]

TRUE_TOKENS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_TOKENS = frozenset({"false", "f", "no", "n", "0"})
NUMERIC_SHARE = 0.95
TEXT_MEAN_CHARS = 30
TEXT_UNIQUE_SHARE = 0.5
ID_UNIQUE_SHARE = 0.95
MAX_AUTO_CLASSES = 10
MAX_CLASSES = 50
MIN_ROWS = 30
MIN_CLASS_ROWS = 5
#: How a categorical's missing value reaches the encoder (imputed inside the graph).
MISSING_CATEGORY = "(missing)"

_THOUSANDS = re.compile(r"^\d{1,3}(,\d{3})+(\.\d*)?$")
_DIGITS = re.compile(r"^\d+$")
_CURRENCY = " $€£¥"
_EXAMPLES = 3


def is_missing(cell: str) -> bool:
    return cell.lower() in MISSING_TOKENS


def parse_number(cell: str) -> float | None:
    """A finite number from a cell (`-1,234.5`, `$12`, `12 %`), or None."""
    try:
        value: float | None = float(cell)
    except ValueError:
        value = _loose_number(cell)
    return value if value is not None and math.isfinite(value) else None


def _loose_number(cell: str) -> float | None:
    """Numbers as spreadsheets export them: currency signs, thousands separators, percents."""
    sign = "-" if cell.startswith("-") else ""
    text = cell.removeprefix("-").removeprefix("+").strip(_CURRENCY).removesuffix("%").strip()
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    if not text or not (text[0].isdigit() or text[0] == "."):
        return None
    try:
        return float(sign + text)
    except ValueError:
        return None


def _quoted(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values[:_EXAMPLES])


def _id_named(name: str) -> bool:
    low = name.lower()
    return (
        low in {"id", "uuid", "guid", "key", "index"}
        or low.endswith(("_id", "-id", " id", "uuid", "guid"))
        or re.search(r"[a-z0-9]Id$", name) is not None
    )


@dataclass(frozen=True)
class FeatureColumn:
    """A column the model uses, with its values on the kept rows."""

    name: str
    kind: Kind
    #: float64 with NaN for missing (numeric, boolean); str with "" for missing (categorical).
    values: np.ndarray
    #: Categorical: the values kept, most frequent first.
    categories: tuple[str, ...] = ()
    missing: int = 0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class IgnoredColumn:
    name: str
    reason: str


@dataclass(frozen=True)
class Target:
    name: str
    task: Task
    #: Rows (of the table) the model trains and evaluates on.
    keep: np.ndarray
    #: Labels (str) for classification, values (float64) for regression, on the kept rows.
    y: np.ndarray
    classes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """What training will do with each column of a table."""

    source: str
    target: Target
    features: tuple[FeatureColumn, ...]
    ignored: tuple[IgnoredColumn, ...]

    @property
    def rows(self) -> int:
        return len(self.target.y)

    def summary(self) -> list[str]:
        """Lines for the training log and the model card."""
        t = self.target
        if t.task == "regression":
            what = "regression"
        else:
            counts = Counter(t.y.tolist())
            shown = ", ".join(f"{c} {counts[c]:,}" for c in t.classes[:10])
            what = f"classification, {len(t.classes)} classes: {shown}"
        lines = [f"target {t.name!r}: {what}; {self.rows:,} rows"]
        lines += [f"  {n}" for n in t.notes]
        lines.append(f"features ({len(self.features)}):")
        width = max((len(f.name) for f in self.features), default=0)
        for f in self.features:
            detail = f"{len(f.categories)} categories" if f.kind == "categorical" else ""
            extra = [detail] if detail else []
            if f.missing:
                extra.append(f"{f.missing:,} missing")
            extra += list(f.notes)
            lines.append(f"  {f.name:{width}}  {f.kind:11}  {'; '.join(extra)}".rstrip())
        if self.ignored:
            lines.append(f"ignored ({len(self.ignored)}):")
            width = max(len(c.name) for c in self.ignored)
            lines += [f"  {c.name:{width}}  {c.reason}" for c in self.ignored]
        return lines


def find_target(header: Sequence[str], wanted: str) -> str:
    """The header name `wanted` refers to (exact, else ignoring case and spaces)."""
    if wanted in header:
        return wanted

    def key(s: str) -> str:
        return re.sub(r"\s+", " ", s).strip().lower()

    matches = [h for h in header if key(h) == key(wanted)]
    if len(matches) == 1:
        return matches[0]
    close = difflib.get_close_matches(wanted, header, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise TrainingError(
        f"target column {wanted!r} not found{hint}; the columns are: "
        f"{', '.join(repr(h) for h in header)}"
    )


# --- the target ---------------------------------------------------------------------------


def _label(cell: str, value: float | None) -> str:
    """Class labels: numbers canonical (`1.0` -> `1`), text as written."""
    if value is None:
        return cell
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else f"{value:g}"


def plan_target(name: str, cells: Sequence[str], choice: TaskChoice) -> Target:
    keep = np.array([not is_missing(c) for c in cells], dtype=bool)
    notes = []
    blank = int((~keep).sum())
    if blank:
        notes.append(f"{blank:,} row(s) with a blank target dropped")
    present = [c for c, k in zip(cells, keep, strict=True) if k]
    parsed = [parse_number(c) for c in present]
    numbers = sum(v is not None for v in parsed)
    share = numbers / len(present) if present else 0.0
    distinct = len(set(present))
    if choice == "regression" or (
        choice == "auto" and share == 1.0 and distinct > MAX_AUTO_CLASSES
    ):
        return _regression(name, cells, keep, parsed, share, notes)
    return _classification(name, cells, keep, parsed, share, notes)


def _regression(
    name: str,
    cells: Sequence[str],
    keep: np.ndarray,
    parsed: list[float | None],
    share: float,
    notes: list[str],
) -> Target:
    if share < NUMERIC_SHARE:
        present = [c for c, k in zip(cells, keep, strict=True) if k]
        bad = [c for c, v in zip(present, parsed, strict=True) if v is None]
        raise TrainingError(
            f"target {name!r} is not numeric ({len(bad):,} values are not numbers, e.g. "
            f"{_quoted(bad)}); a regression needs numbers: use --task classification"
        )
    idx = np.flatnonzero(keep)
    ok = np.array([v is not None for v in parsed], dtype=bool)
    if not ok.all():
        notes.append(f"{int((~ok).sum()):,} row(s) with a non-numeric target dropped")
    keep = keep.copy()
    keep[idx[~ok]] = False
    y = np.array([v for v in parsed if v is not None], dtype=np.float64)
    _enough_rows(name, len(y), notes)
    if np.ptp(y) == 0:
        raise TrainingError(f"target {name!r} is constant ({y[0]:g}): there is nothing to predict")
    return Target(name=name, task="regression", keep=keep, y=y, notes=tuple(notes))


def _classification(
    name: str,
    cells: Sequence[str],
    keep: np.ndarray,
    parsed: list[float | None],
    share: float,
    notes: list[str],
) -> Target:
    present = [c for c, k in zip(cells, keep, strict=True) if k]
    numeric = share == 1.0
    labels = [_label(c, v if numeric else None) for c, v in zip(present, parsed, strict=True)]
    counts = Counter(labels)
    if len(counts) > MAX_CLASSES:
        hint = " use --task regression for a number, or" if share >= NUMERIC_SHARE else ""
        raise TrainingError(
            f"target {name!r} has {len(counts):,} distinct values: too many classes (at most "
            f"{MAX_CLASSES});{hint} pick a column with fewer classes"
        )
    rare = sorted((c for c, n in counts.items() if n < MIN_CLASS_ROWS), key=lambda c: counts[c])
    if rare:
        dropped = sum(counts[c] for c in rare)
        notes.append(
            f"{dropped:,} row(s) of {len(rare)} class(es) seen in fewer than {MIN_CLASS_ROWS} "
            f"rows dropped ({', '.join(f'{c!r} {counts[c]}' for c in rare[:5])}): too few to "
            "learn or evaluate"
        )
    classes = tuple(sorted(c for c in counts if c not in rare))
    if len(classes) < 2:
        only = f" ({classes[0]!r}, {counts[classes[0]]:,} rows)" if classes else ""
        raise TrainingError(
            f"target {name!r} has {len(classes)} class(es){only} with at least {MIN_CLASS_ROWS} "
            "rows; a classifier needs two or more: check the column"
            + (", or use --task regression" if share >= NUMERIC_SHARE else "")
        )
    idx = np.flatnonzero(keep)
    wanted = np.array([lab not in rare for lab in labels], dtype=bool)
    keep = keep.copy()
    keep[idx[~wanted]] = False
    y = np.array([lab for lab, w in zip(labels, wanted, strict=True) if w], dtype=object)
    _enough_rows(name, len(y), notes)
    task: Task = "binary_classification" if len(classes) == 2 else "multiclass_classification"
    return Target(name=name, task=task, keep=keep, y=y, classes=classes, notes=tuple(notes))


def _enough_rows(name: str, rows: int, notes: Sequence[str]) -> None:
    if rows < MIN_ROWS:
        why = f" ({'; '.join(notes)})" if notes else ""
        raise TrainingError(
            f"only {rows} row(s) have a usable {name!r}{why}; training needs at least "
            f"{MIN_ROWS} to hold some out for evaluation: add rows"
        )


# --- features -----------------------------------------------------------------------------


def _numbers(values: Sequence[float | None]) -> np.ndarray:
    """float64 holding exactly float32 values: the graph takes float32, and a tree threshold
    between two float64 values must split float32 inputs the same way."""
    raw = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    with np.errstate(over="ignore"):
        as32 = raw.astype(np.float32)
    as32[~np.isfinite(as32)] = np.nan  # beyond float32's range: missing, like non-numbers
    return as32.astype(np.float64)


def infer_feature(
    name: str, cells: Sequence[str], *, max_categories: int, min_category_rows: int
) -> FeatureColumn | IgnoredColumn:
    """Decide what one column is (see the module docstring) and convert its cells."""
    present = [c for c in cells if not is_missing(c)]
    missing = len(cells) - len(present)
    if not present:
        return IgnoredColumn(name, "empty (every cell blank)")
    distinct = set(present)
    if len(distinct) == 1 and not missing:
        return IgnoredColumn(name, f"constant ({present[0]!r} in every row)")
    lowered = {c.lower() for c in distinct}
    if lowered <= TRUE_TOKENS | FALSE_TOKENS and lowered & TRUE_TOKENS and lowered & FALSE_TOKENS:
        values = np.array(
            [math.nan if is_missing(c) else float(c.lower() in TRUE_TOKENS) for c in cells]
        )
        return FeatureColumn(name, "boolean", values, missing=missing)
    if len(distinct) > 1:
        numeric = _numeric(name, cells, present, missing)
        if numeric is not None:
            return numeric
    return _text(name, cells, present, missing, max_categories, min_category_rows)


def _numeric(
    name: str, cells: Sequence[str], present: list[str], missing: int
) -> FeatureColumn | IgnoredColumn | None:
    parsed = [None if is_missing(c) else parse_number(c) for c in cells]
    ok = [v for v in parsed if v is not None]
    if len(ok) < NUMERIC_SHARE * len(present):
        return None
    if all(_DIGITS.match(c) for c in present):
        if any(len(c) > 1 and c[0] == "0" for c in present):
            return None  # zero-padded codes: categorical
        unique = len(set(present)) == len(present) and not missing
        counts_up = bool(np.all(np.diff(np.array(ok)) == 1))  # 1, 2, 3...: a row number
        if unique and (_id_named(name) or counts_up):
            return IgnoredColumn(name, "identifier (a different integer in every row)")
        if _id_named(name) and not unique:
            return None  # integer codes such as store_id: categorical
    notes = []
    bad = [c for c, v in zip(cells, parsed, strict=True) if v is None and not is_missing(c)]
    if bad:
        notes.append(
            f"{len(bad):,} non-numeric value(s) read as missing (e.g. {_quoted(sorted(set(bad)))})"
        )
    values = _numbers(parsed)
    return FeatureColumn(
        name, "numeric", values, missing=int(np.isnan(values).sum()), notes=tuple(notes)
    )


def _text(
    name: str,
    cells: Sequence[str],
    present: list[str],
    missing: int,
    max_categories: int,
    min_category_rows: int,
) -> FeatureColumn | IgnoredColumn:
    counts = Counter(present)
    share = len(counts) / len(present)
    mean_chars = sum(len(c) for c in present) / len(present)
    if mean_chars >= TEXT_MEAN_CHARS and share >= TEXT_UNIQUE_SHARE:
        return IgnoredColumn(
            name,
            f"free text (mean {mean_chars:.0f} characters, {share:.0%} distinct): the trainer "
            "uses no text features",
        )
    if share >= ID_UNIQUE_SHARE and len(counts) > 1:
        return IgnoredColumn(name, f"identifier-like ({share:.0%} of values distinct)")
    kept = tuple(v for v, n in counts.most_common(max_categories) if n >= min_category_rows)
    if not kept:
        return IgnoredColumn(
            name, f"no value occurs in {min_category_rows} or more rows ({len(counts):,} distinct)"
        )
    notes = []
    if len(counts) == 1:
        notes.append("one value or blank: the blank is a category of its own")
    elif len(kept) < len(counts):
        others = sum(n for v, n in counts.items() if v not in set(kept))
        notes.append(
            f"{len(counts):,} distinct: the {len(kept)} most frequent kept, the other "
            f"{len(counts) - len(kept):,} ({others / len(cells):.0%} of rows) count as unseen"
        )
    values = np.array(["" if is_missing(c) else c for c in cells], dtype=object)
    return FeatureColumn(
        name, "categorical", values, categories=kept, missing=missing, notes=tuple(notes)
    )


def plan_dataset(
    table: Table,
    target: str,
    choice: TaskChoice = "auto",
    *,
    max_categories: int = 30,
    min_category_rows: int = 5,
) -> Plan:
    """Decide the task and every column's role; convert the kept rows."""
    name = find_target(table.header, target)
    t = plan_target(name, table.column(name), choice)
    features: list[FeatureColumn] = []
    ignored: list[IgnoredColumn] = []
    for header, column in zip(table.header, table.columns, strict=True):
        if header == name:
            continue
        cells = [c for c, k in zip(column, t.keep, strict=True) if k]
        decided = infer_feature(
            header, cells, max_categories=max_categories, min_category_rows=min_category_rows
        )
        if isinstance(decided, FeatureColumn):
            features.append(decided)
        else:
            ignored.append(decided)
    if not features:
        reasons = "; ".join(f"{c.name!r}: {c.reason}" for c in ignored) or "no other column"
        raise TrainingError(
            f"no usable feature column besides the target {name!r} ({reasons}); the model "
            "needs at least one numeric, boolean or categorical column"
        )
    return Plan(source=table.source, target=t, features=tuple(features), ignored=tuple(ignored))
