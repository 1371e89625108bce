"""Typed wrappers around the two Apache DataSketches the profiles use; the only module that
imports `datasketches`.

- `Quantiles`: a KLL sketch of doubles (Karnin, Lang & Liberty 2016). With parameter k it keeps
  O(k log(n/k)) items and answers rank queries within a normalized rank error epsilon(k) with 99%
  confidence: about 0.28% for one query and 0.36% for all ranks at once (PMF/CDF) at k = 1000,
  roughly 2.3 / k^0.9 in general. Below k items it is exact (epsilon = 0).
- `Frequencies`: exact counts of a categorical column while it has at most `max_exact`
  distinct values; above that, a frequent-items sketch (Misra-Gries with the DataSketches
  purge policy) whose estimates are within `epsilon * total weight` of the truth.

Both are mergeable: merging the sketches of two streams gives a sketch of the union with the same
guarantees; counts stay exact, quantiles move only within the stated error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import datasketches as ds  # type: ignore[import-untyped]
import numpy as np

#: k = 200 (1.65% over all ranks) let the sketch's random compaction move a normalized
#: Wasserstein distance by up to 0.06 from its exact value (threshold 0.1): the same window was
#: judged drifted in one build and not in the next. k = 1000: 0.008 at most, ~23 KB a column
#: (docs/monitoring.md, "KLL sketch error bounds").
DEFAULT_K = 1000
DEFAULT_MAX_EXACT = 1000
#: log2 of the frequent-items map size: tracks up to 0.75 * 2^11 = 1536 items.
FREQUENT_LG_MAX_MAP = 11
OTHER = "__other__"


class Quantiles:
    """A KLL quantile sketch of the finite values of a numeric column."""

    __slots__ = ("_sk",)

    def __init__(self, k: int = DEFAULT_K, *, _sketch: Any = None) -> None:
        if not 8 <= k <= 65535:
            raise ValueError(f"KLL k must be in [8, 65535], got {k}")
        # datasketches ships no type information: the sketch objects are `Any` here only.
        self._sk: Any = _sketch if _sketch is not None else ds.kll_doubles_sketch(k)

    def update(self, values: np.ndarray) -> None:
        """Add a float64 array of finite values (one C call for the whole array)."""
        if values.size:
            self._sk.update(np.ascontiguousarray(values, dtype=np.float64))

    def merge(self, other: Quantiles) -> None:
        self._sk.merge(other._sk)

    @property
    def k(self) -> int:
        return int(self._sk.k)

    @property
    def n(self) -> int:
        return int(self._sk.n)

    @property
    def rank_error(self) -> float:
        """epsilon for every rank at once (the CDF/PMF bound, 99% confidence); 0 when exact."""
        if not self._sk.is_estimation_mode():
            return 0.0
        return float(self._sk.normalized_rank_error(True))

    def quantiles(self, ranks: np.ndarray) -> np.ndarray:
        if self.n == 0:
            return np.full(ranks.shape, math.nan)
        return np.asarray(self._sk.get_quantiles(ranks), dtype=np.float64)

    def weighted_items(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted values, weights): the discrete distribution the sketch stands for.

        The weights sum to `n`; exact statistics of this distribution (KS, Wasserstein, PSI
        bins) are within the sketch's rank error of the statistics of the data itself.
        """
        if self.n == 0:
            return np.empty(0), np.empty(0)
        pairs = np.array(list(self._sk), dtype=np.float64)
        order = np.argsort(pairs[:, 0], kind="stable")
        return pairs[order, 0], pairs[order, 1]

    def to_bytes(self) -> bytes:
        return bytes(self._sk.serialize())

    @classmethod
    def from_bytes(cls, blob: bytes) -> Quantiles:
        sk = ds.kll_doubles_sketch.deserialize(blob)
        return cls(int(sk.k), _sketch=sk)


class Frequencies:
    """Counts of a categorical column: exact up to `max_exact` distinct values, then sketched.

    Exact counts make chi-square and Jensen-Shannon exact and merges exact, and the monitored
    categorical features (merchant category, currency, age band, region, booleans) have tens of
    values. A high-cardinality column (an id slipped into the features) switches to a
    frequent-items sketch so a profile stays small whatever the data.
    """

    __slots__ = ("_counts", "_max_exact", "_sk")

    def __init__(self, max_exact: int = DEFAULT_MAX_EXACT) -> None:
        self._counts: dict[str, int] | None = {}
        self._sk: Any = None
        self._max_exact = max_exact

    @property
    def exact(self) -> bool:
        return self._counts is not None

    @property
    def max_exact(self) -> int:
        return self._max_exact

    @property
    def total(self) -> int:
        if self._counts is not None:
            return sum(self._counts.values())
        return int(self._sk.total_weight)

    @property
    def error(self) -> float:
        """Bound on the absolute error of any one count (0 while exact)."""
        if self._sk is None:
            return 0.0
        return float(self._sk.epsilon) * self.total

    def update_counts(self, counts: Mapping[str, int]) -> None:
        """Add already-aggregated counts (what `np.unique(..., return_counts=True)` gives)."""
        if self._counts is not None:
            for item, c in counts.items():
                self._counts[item] = self._counts.get(item, 0) + int(c)
            if len(self._counts) > self._max_exact:
                self._to_sketch()
            return
        for item, c in counts.items():
            self._sk.update(item, int(c))

    def merge(self, other: Frequencies) -> None:
        if other._counts is not None:
            self.update_counts(other._counts)
            return
        if self._counts is not None:
            self._to_sketch()
        self._sk.merge(other._sk)

    def counts(self) -> dict[str, float]:
        """Count per value. When sketched: each tracked item's lower bound (never above the
        truth, at most `error` below it) and `OTHER` for the rest, so the counts sum to `total`.
        """
        if self._counts is not None:
            return {k: float(v) for k, v in self._counts.items()}
        rows = self._sk.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
        out = {str(item): float(lower) for item, _est, lower, _upper in rows if lower > 0}
        rest = self.total - sum(out.values())
        if rest > 0:
            out[OTHER] = out.get(OTHER, 0.0) + rest
        return out

    def _to_sketch(self) -> None:
        sk = ds.frequent_strings_sketch(FREQUENT_LG_MAX_MAP)
        for item, c in (self._counts or {}).items():
            sk.update(item, c)
        self._sk, self._counts = sk, None

    def to_state(self) -> tuple[dict[str, int] | None, bytes]:
        """(exact counts, b"") or (None, sketch bytes): what a profile serializes."""
        if self._counts is not None:
            return dict(self._counts), b""
        return None, bytes(self._sk.serialize())

    @classmethod
    def from_state(
        cls, counts: Mapping[str, int] | None, blob: bytes, max_exact: int
    ) -> Frequencies:
        f = cls(max_exact)
        if counts is not None:
            f._counts = {str(k): int(v) for k, v in counts.items()}
        else:
            f._counts, f._sk = None, ds.frequent_strings_sketch.deserialize(blob)
        return f
