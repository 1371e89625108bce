"""Group fairness of a binary classifier from per-group confusion counts.

Per sensitive attribute (age band, region), over the groups with at least `min_group_size`
labelled rows (smaller groups are listed as insufficient, never silently dropped):

- demographic parity difference: max - min selection rate P(predicted positive | group);
- disparate impact: min / max selection rate, with the four-fifths rule flag (ratio < 0.8 and
  the parity gap statistically significant, EEOC Uniform Guidelines, 29 CFR 1607.4(D));
- equalized odds difference: the larger of the TPR gap and the FPR gap (Hardt, Price & Srebro
  2016; the definition Fairlearn uses).

Every rate carries a Wilson score interval (Wilson 1927) and every gap, taken between the two
extreme groups, a Newcombe hybrid score interval for a difference of independent proportions
(Newcombe 1998, "Interval estimation for the difference between independent proportions",
Statistics in Medicine 17:873-890, method 10). The extreme pair is chosen after looking at the
data, so gap intervals are simultaneous over all G(G-1)/2 pairs of compared groups (Bonferroni:
level 1 - (1 - confidence) / pairs); with 7 regions that is z = 3.04 instead of 1.96. A gap is
flagged when it is at least `tolerance` and its interval excludes zero: large enough to matter
and not explained by sampling noise.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from aibackend.monitoring.confusion import ConfusionTable, Counts
from aibackend.monitoring.stats import newcombe_interval, normal_quantile, wilson_interval

Metric = Literal["demographic_parity", "true_positive_rate", "false_positive_rate"]


class BiasConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_group_size: int = Field(default=100, ge=1, description="labelled rows a group needs")
    #: Rows of a class (actual positives for TPR, negatives for FPR) a group needs for that rate.
    min_class_size: int = Field(default=20, ge=1)
    confidence: float = Field(default=0.95, gt=0, lt=1)
    tolerance: float = Field(default=0.1, ge=0, le=1)
    four_fifths: float = Field(default=0.8, gt=0, le=1)


class Rate(BaseModel):
    """successes / trials with its Wilson interval; value None when there are no trials."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    successes: int
    trials: int
    value: float | None
    lower: float
    upper: float


class GroupRates(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    group: str
    n: int
    selection_rate: Rate
    true_positive_rate: Rate
    false_positive_rate: Rate


class Gap(BaseModel):
    """high_group's rate minus low_group's, with its Newcombe interval."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: Metric
    value: float
    lower: float
    upper: float
    high_group: str
    low_group: str
    flagged: bool


class AttributeBias(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    attribute: str
    groups: list[GroupRates]
    #: Groups below `min_group_size`: reported, not compared.
    insufficient: list[str]
    demographic_parity_difference: Gap | None
    disparate_impact: float | None
    four_fifths_violation: bool
    true_positive_rate_difference: Gap | None
    false_positive_rate_difference: Gap | None
    equalized_odds_difference: float | None
    bias_detected: bool


class BiasReport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    attributes: list[AttributeBias]
    config: BiasConfig

    @computed_field  # type: ignore[prop-decorator]
    @property
    def detected(self) -> bool:
        return any(a.bias_detected for a in self.attributes)


def bias_report(table: ConfusionTable, config: BiasConfig | None = None) -> BiasReport:
    """Fairness metrics for every attribute in `table`."""
    cfg = config or BiasConfig()
    z = normal_quantile(0.5 + cfg.confidence / 2)
    return BiasReport(
        attributes=[_attribute(a, table.groups[a], cfg, z) for a in sorted(table.groups)],
        config=cfg,
    )


def _rate(successes: int, trials: int, z: float) -> Rate:
    lo, hi = wilson_interval(successes, trials, z)
    value = successes / trials if trials else None
    return Rate(successes=successes, trials=trials, value=value, lower=lo, upper=hi)


def _rates(group: str, c: Counts, z: float) -> GroupRates:
    return GroupRates(
        group=group,
        n=c.n,
        selection_rate=_rate(c.predicted_positive, c.n, z),
        true_positive_rate=_rate(c.tp, c.positives, z),
        false_positive_rate=_rate(c.fp, c.negatives, z),
    )


def _attribute(name: str, groups: dict[str, Counts], cfg: BiasConfig, z: float) -> AttributeBias:
    rates = [_rates(g, c, z) for g, c in sorted(groups.items())]
    ok = [r for r in rates if r.n >= cfg.min_group_size]
    dp = _gap("demographic_parity", [(r.group, r.selection_rate) for r in ok], cfg)
    tpr = _gap(
        "true_positive_rate",
        [
            (r.group, r.true_positive_rate)
            for r in ok
            if r.true_positive_rate.trials >= cfg.min_class_size
        ],
        cfg,
    )
    fpr = _gap(
        "false_positive_rate",
        [
            (r.group, r.false_positive_rate)
            for r in ok
            if r.false_positive_rate.trials >= cfg.min_class_size
        ],
        cfg,
    )
    impact = None
    if dp is not None and dp.value + _selection(ok, dp.low_group) > 0:
        impact = _selection(ok, dp.low_group) / (dp.value + _selection(ok, dp.low_group))
    gaps = [g.value for g in (tpr, fpr) if g is not None]
    return AttributeBias(
        attribute=name,
        groups=rates,
        insufficient=[r.group for r in rates if r.n < cfg.min_group_size],
        demographic_parity_difference=dp,
        disparate_impact=impact,
        # The Guidelines ask for significance too: a ratio below 4/5 from sampling noise alone
        # is not adverse impact, so the parity gap's interval must exclude zero.
        four_fifths_violation=impact is not None
        and impact < cfg.four_fifths
        and dp is not None
        and dp.lower > 0.0,
        true_positive_rate_difference=tpr,
        false_positive_rate_difference=fpr,
        equalized_odds_difference=max(gaps) if gaps else None,
        bias_detected=any(g is not None and g.flagged for g in (dp, tpr, fpr)),
    )


def _selection(rates: list[GroupRates], group: str) -> float:
    return next(r.selection_rate.value or 0.0 for r in rates if r.group == group)


def _gap(metric: Metric, rates: list[tuple[str, Rate]], cfg: BiasConfig) -> Gap | None:
    """The gap between the groups with the highest and the lowest rate (None below 2 groups)."""
    if len(rates) < 2:
        return None
    high = max(rates, key=lambda r: r[1].value or 0.0)
    low = min(rates, key=lambda r: r[1].value or 0.0)
    h, lo_rate = high[1], low[1]
    pairs = len(rates) * (len(rates) - 1) / 2
    z_pairs = normal_quantile(1.0 - (1.0 - cfg.confidence) / (2.0 * pairs))
    d, lower, upper = newcombe_interval(
        h.successes, h.trials, lo_rate.successes, lo_rate.trials, z_pairs
    )
    return Gap(
        metric=metric,
        value=d,
        lower=lower,
        upper=upper,
        high_group=high[0],
        low_group=low[0],
        flagged=d >= cfg.tolerance and lower > 0.0,
    )
