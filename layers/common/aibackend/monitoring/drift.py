"""Data and prediction drift of a window against the training baseline, from profiles alone.

Test selection follows Evidently's documented defaults (docs.evidentlyai.com, "Data drift",
"How it works"; since Evidently 0.1.50):

| column      | reference rows <= 1,000           | reference rows > 1,000              |
|-------------|-----------------------------------|-------------------------------------|
| numeric     | two-sample KS, p < 0.05           | Wasserstein / reference std >= 0.1  |
| categorical | chi-square (z-test if binary), p < 0.05 | Jensen-Shannon distance >= 0.1 |

PSI is available per column (or for all) with the sample-size-aware critical value of Yurdakul
(2018): PSI * (1/N + 1/M)^-1 is asymptotically chi-square with B-1 degrees of freedom.

On top of the distribution test, each feature's missing-value share is compared with a
two-proportion z-test (Evidently drops missing values before testing, so a feature that goes
20% missing would look stable there): it drifts when p < `null_share_alpha` and the share moved
by at least `null_share_tolerance`.

Statistics come from the KLL sketches' weighted items (exact for the distribution the sketch
stands for) and from the exact category counts. The sketch's rank error epsilon bounds the
error of every CDF value: the KS statistic is within eps_ref + eps_cur of the data's, and the
test uses D - eps_ref - eps_cur (so a drift verdict holds whatever the sketch error within its
99% bound, at the price of power); the Wasserstein distance is within (eps_ref + eps_cur) x range
/ std (a worst case, reported as `approximation_error`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, computed_field

from aibackend.monitoring.profiles import CategoricalColumn, NumericColumn, Profile
from aibackend.monitoring.stats import chi2_isf, chi2_sf, ks_pvalue, normal_sf

TestName = Literal["ks", "wasserstein", "psi", "chi_square", "z_test", "jensen_shannon"]
NUMERIC_TESTS: frozenset[str] = frozenset({"ks", "wasserstein", "psi"})
CATEGORICAL_TESTS: frozenset[str] = frozenset({"chi_square", "z_test", "jensen_shannon", "psi"})
#: Floor for an empty bin's share in PSI (Evidently uses the same 1e-4).
PSI_FLOOR = 1e-4
#: Floor for the reference std that normalizes the Wasserstein distance (as Evidently).
STD_FLOOR = 1e-3


class DriftConfig(BaseModel):
    """Thresholds and test choices; the defaults are Evidently's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    small_reference_rows: int = Field(default=1000, ge=1)
    alpha: float = Field(default=0.05, gt=0, lt=1, description="KS, chi-square, z-test level")
    wasserstein_threshold: float = Field(default=0.1, gt=0)
    jensen_shannon_threshold: float = Field(default=0.1, gt=0, le=1)
    psi_bins: int = Field(default=10, ge=2)
    psi_alpha: float = Field(default=0.05, gt=0, lt=1)
    null_share_alpha: float = Field(default=0.05, gt=0, lt=1)
    null_share_tolerance: float = Field(default=0.02, ge=0, le=1)
    drift_share: float = Field(default=0.5, gt=0, le=1)
    #: Per-column test overrides, e.g. {"amount_eur": "psi"}; other columns use the defaults.
    tests: dict[str, TestName] = Field(default_factory=dict)


class ColumnDrift(BaseModel):
    """One column's verdict. `threshold` is the distance threshold, or the level a p-value is
    compared with (ks, chi_square, z_test), or PSI's critical value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    kind: Literal["numeric", "categorical"]
    test: TestName | None = Field(description="None when one side has no values to compare")
    statistic: float | None
    threshold: float | None
    p_value: float | None
    approximation_error: float = Field(description="bound on the statistic's sketch error")
    distribution_drifted: bool
    reference_null_share: float
    current_null_share: float
    null_share_p_value: float
    null_share_drifted: bool
    reference_rows: int
    current_rows: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def drifted(self) -> bool:
        return self.distribution_drifted or self.null_share_drifted


class DriftReport(BaseModel):
    """Per-feature and prediction verdicts plus the dataset verdict (features only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: list[ColumnDrift]
    prediction: list[ColumnDrift]
    drifted_features: list[str]
    share: float
    drift_share: float
    dataset_drift: bool


def detect_drift(
    reference: Profile, current: Profile, config: DriftConfig | None = None
) -> DriftReport:
    """Compare `current` (a window) with `reference` (the training baseline profile)."""
    cfg = config or DriftConfig()
    if set(reference.columns) != set(current.columns):
        raise ValueError(
            "reference and current profiles have different columns: "
            f"only in reference {sorted(set(reference.columns) - set(current.columns))}, "
            f"only in current {sorted(set(current.columns) - set(reference.columns))}"
        )
    features = [
        _column(name, reference.columns[name], current.columns[name], reference, current, cfg)
        for name in (*reference.schema.numeric, *reference.schema.categorical)
    ]
    prediction: list[ColumnDrift] = []
    if reference.score is not None and current.score is not None:
        prediction.append(_column("score", reference.score, current.score, reference, current, cfg))
    if reference.predicted is not None and current.predicted is not None:
        prediction.append(
            _column("predicted", reference.predicted, current.predicted, reference, current, cfg)
        )
    drifted = [f.column for f in features if f.drifted]
    share = len(drifted) / len(features) if features else 0.0
    return DriftReport(
        features=features,
        prediction=prediction,
        drifted_features=drifted,
        share=share,
        drift_share=cfg.drift_share,
        dataset_drift=bool(features) and share >= cfg.drift_share,
    )


# --- one column ---------------------------------------------------------------------------


class _Verdict(BaseModel):
    test: TestName | None
    statistic: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    error: float = 0.0
    drifted: bool = False


def _column(
    name: str,
    ref: NumericColumn | CategoricalColumn,
    cur: NumericColumn | CategoricalColumn,
    reference: Profile,
    current: Profile,
    cfg: DriftConfig,
) -> ColumnDrift:
    if isinstance(ref, NumericColumn) and isinstance(cur, NumericColumn):
        kind: Literal["numeric", "categorical"] = "numeric"
        verdict = _numeric(name, ref, cur, reference.rows, cfg)
    elif isinstance(ref, CategoricalColumn) and isinstance(cur, CategoricalColumn):
        kind = "categorical"
        verdict = _categorical(name, ref, cur, reference.rows, cfg)
    else:
        raise TypeError(f"column {name!r} is numeric in one profile and categorical in the other")
    ref_rows, cur_rows = ref.count + ref.nulls, cur.count + cur.nulls
    p_null = _two_proportion_p(ref.nulls, ref_rows, cur.nulls, cur_rows)
    r_share = ref.nulls / ref_rows if ref_rows else 0.0
    c_share = cur.nulls / cur_rows if cur_rows else 0.0
    return ColumnDrift(
        column=name,
        kind=kind,
        test=verdict.test,
        statistic=verdict.statistic,
        threshold=verdict.threshold,
        p_value=verdict.p_value,
        approximation_error=verdict.error,
        distribution_drifted=verdict.drifted,
        reference_null_share=r_share,
        current_null_share=c_share,
        null_share_p_value=p_null,
        null_share_drifted=p_null < cfg.null_share_alpha
        and abs(c_share - r_share) >= cfg.null_share_tolerance,
        reference_rows=ref_rows,
        current_rows=cur_rows,
    )


def _choose(
    name: str, kind: str, allowed: frozenset[str], auto: TestName, cfg: DriftConfig
) -> TestName:
    test = cfg.tests.get(name, auto)
    if test not in allowed:
        raise ValueError(
            f"column {name!r} is {kind}: test {test!r} is not one of {sorted(allowed)}"
        )
    return test


def _numeric(
    name: str, ref: NumericColumn, cur: NumericColumn, ref_rows: int, cfg: DriftConfig
) -> _Verdict:
    auto: TestName = "ks" if ref_rows <= cfg.small_reference_rows else "wasserstein"
    test = _choose(name, "numeric", NUMERIC_TESTS, auto, cfg)
    if ref.count == 0 or cur.count == 0:
        return _Verdict(test=None)
    xr, wr = ref.sketch.weighted_items()
    xc, wc = cur.sketch.weighted_items()
    eps = ref.sketch.rank_error + cur.sketch.rank_error
    if test == "psi":
        return _psi_numeric(xr, wr, xc, wc, cfg)
    grid = np.union1d(xr, xc)
    fr, fc = _cdf(xr, wr, grid), _cdf(xc, wc, grid)
    if test == "ks":
        d = float(np.max(np.abs(fr - fc)))
        p = ks_pvalue(max(0.0, d - eps), ref.count, cur.count)
        return _Verdict(
            test=test, statistic=d, threshold=cfg.alpha, p_value=p, error=eps, drifted=p < cfg.alpha
        )
    # Wasserstein-1 = integral of |F_ref - F_cur| dx; both CDFs are steps at `grid`.
    w1 = float(np.sum(np.abs(fr - fc)[:-1] * np.diff(grid)))
    norm = max(ref.std, STD_FLOOR)
    spread = max(ref.max, cur.max) - min(ref.min, cur.min)
    stat = w1 / norm
    return _Verdict(
        test=test,
        statistic=stat,
        threshold=cfg.wasserstein_threshold,
        error=eps * spread / norm,
        drifted=stat >= cfg.wasserstein_threshold,
    )


def _cdf(values: np.ndarray, weights: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Right-continuous CDF of the weighted sample (sorted `values`) at the points `at`."""
    cum = np.concatenate(([0.0], np.cumsum(weights)))
    cdf: np.ndarray = cum[np.searchsorted(values, at, side="right")] / cum[-1]
    return cdf


def _psi_numeric(
    xr: np.ndarray, wr: np.ndarray, xc: np.ndarray, wc: np.ndarray, cfg: DriftConfig
) -> _Verdict:
    # Bins: the reference's quantiles at 1/B, ..., (B-1)/B (ties collapse bins).
    ranks = np.arange(1, cfg.psi_bins) / cfg.psi_bins
    cum = np.cumsum(wr) / wr.sum()
    edges = np.unique(xr[np.minimum(np.searchsorted(cum, ranks, side="left"), xr.size - 1)])
    r = np.diff(np.concatenate(([0.0], _cdf(xr, wr, edges), [1.0])))
    c = np.diff(np.concatenate(([0.0], _cdf(xc, wc, edges), [1.0])))
    return _psi(r, c, float(wr.sum()), float(wc.sum()), cfg)


def _psi(r: np.ndarray, c: np.ndarray, n: float, m: float, cfg: DriftConfig) -> _Verdict:
    """PSI of share vectors `r` (reference, n rows) and `c` (current, m rows)."""
    r, c = np.maximum(r, PSI_FLOOR), np.maximum(c, PSI_FLOOR)
    psi = float(np.sum((c - r) * np.log(c / r)))
    bins = int(r.size)
    if bins < 2:
        return _Verdict(test="psi", statistic=psi, threshold=math.inf, p_value=1.0)
    scale = 1.0 / n + 1.0 / m
    critical = chi2_isf(cfg.psi_alpha, bins - 1) * scale
    return _Verdict(
        test="psi",
        statistic=psi,
        threshold=critical,
        p_value=chi2_sf(psi / scale, bins - 1),
        drifted=psi > critical,
    )


def _categorical(
    name: str, ref: CategoricalColumn, cur: CategoricalColumn, ref_rows: int, cfg: DriftConfig
) -> _Verdict:
    rc, cc = ref.counts(), cur.counts()
    keys: Sequence[str] = sorted(rc.keys() | cc.keys())
    small = ref_rows <= cfg.small_reference_rows
    auto: TestName = ("z_test" if len(keys) <= 2 else "chi_square") if small else "jensen_shannon"
    test = _choose(name, "categorical", CATEGORICAL_TESTS, auto, cfg)
    if ref.count == 0 or cur.count == 0:
        return _Verdict(test=None)
    r = np.array([rc.get(k, 0.0) for k in keys])
    c = np.array([cc.get(k, 0.0) for k in keys])
    n, m = float(r.sum()), float(c.sum())
    error = max(ref.freq.error / n, cur.freq.error / m)
    if test == "psi":
        return _psi(r / n, c / m, n, m, cfg).model_copy(update={"error": error})
    if test == "jensen_shannon":
        js = _jensen_shannon(r / n, c / m)
        t = cfg.jensen_shannon_threshold
        return _Verdict(test=test, statistic=js, threshold=t, error=error, drifted=js >= t)
    if test == "z_test":
        if len(keys) > 2:
            raise ValueError(
                f"column {name!r}: the z-test needs at most 2 categories, has {len(keys)}"
            )
        p = _two_proportion_p(r[0], n, c[0], m)
        z = c[0] / m - r[0] / n
        return _Verdict(
            test=test,
            statistic=float(z),
            threshold=cfg.alpha,
            p_value=p,
            error=error,
            drifted=p < cfg.alpha,
        )
    stat, df = _chi_square_homogeneity(r, c)
    p = chi2_sf(stat, df) if df else 1.0
    return _Verdict(
        test=test,
        statistic=stat,
        threshold=cfg.alpha,
        p_value=p,
        error=error,
        drifted=p < cfg.alpha,
    )


def _jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance, natural log (scipy's `jensenshannon` default, as Evidently)."""
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / m[nz])))

    return math.sqrt(max(0.0, 0.5 * kl(p) + 0.5 * kl(q)))


def _chi_square_homogeneity(r: np.ndarray, c: np.ndarray) -> tuple[float, int]:
    """Pearson's chi-square of the 2 x K table (reference, current) x categories.

    Both samples are treated as samples (a test of homogeneity), so a category new in the
    current window has a finite expected count instead of dividing by zero.
    """
    table = np.vstack([r, c])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    return stat, int(table.shape[1] - 1)


def _two_proportion_p(k1: float, n1: float, k2: float, n2: float) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (1 when undefined)."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    pooled = (k1 + k2) / (n1 + n2)
    var = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
    if var <= 0.0:
        return 1.0
    z = (k2 / n2 - k1 / n1) / math.sqrt(var)
    return min(1.0, 2.0 * normal_sf(abs(z)))
