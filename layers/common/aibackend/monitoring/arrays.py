"""Column conversions the profiles and confusion tables share: what counts as missing, and how
a column becomes strings for counting. Whole-array operations only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

ArrayLike = np.ndarray | Sequence[Any]


def missing_mask(values: np.ndarray) -> np.ndarray:
    """True where a value is missing: NaN in float arrays, None or NaN in object arrays."""
    if values.dtype.kind == "f":
        return np.asarray(np.isnan(values), dtype=bool)
    if values.dtype.kind == "O":
        # Element-wise comparisons on object arrays (`== None` is what numpy vectorizes).
        none = np.asarray(values == None)  # noqa: E711
        nan = np.asarray(values != values)  # NaN is the one value unequal to itself
        return np.asarray(none | nan, dtype=bool)
    return np.zeros(values.shape, dtype=bool)


def as_numeric(values: ArrayLike, name: str) -> np.ndarray:
    """A float64 array in which every missing or non-finite value is NaN."""
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"column {name!r} is declared numeric but has non-numbers: {e}") from None
    if out.ndim != 1:
        raise ValueError(f"column {name!r} must be 1-D, got shape {out.shape}")
    return np.where(np.isfinite(out), out, np.nan)


def count_values(values: ArrayLike, name: str) -> tuple[dict[str, int], int]:
    """(count per distinct non-missing value, as strings; number of missing values).

    Booleans count as "true"/"false" so a bool column and its JSON capture count alike. One
    pass per dtype: `count_nonzero` for booleans, `np.unique` for numbers and fixed-width
    strings, `Counter` for object arrays (10x faster than sorting Python objects).
    """
    a = np.asarray(values)
    if a.ndim != 1:
        raise ValueError(f"column {name!r} must be 1-D, got shape {a.shape}")
    if a.dtype.kind == "b":
        true = int(np.count_nonzero(a))
        counts = {"true": true, "false": int(a.size) - true}
        return {k: v for k, v in counts.items() if v}, 0
    missing = missing_mask(a)
    nulls = int(missing.sum())
    kept = a[~missing] if nulls else a
    if a.dtype.kind == "O":
        return {_text(k): v for k, v in Counter(kept.tolist()).items()}, nulls
    items, n = np.unique(kept, return_counts=True)
    return dict(zip(items.astype(str).tolist(), n.tolist(), strict=True)), nulls


def _text(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)
