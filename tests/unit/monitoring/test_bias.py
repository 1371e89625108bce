"""Bias from per-group confusion counts, on generated transactions where the truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from aibackend.fraud.generator import generate_transactions
from aibackend.monitoring.bias import BiasConfig, bias_report
from aibackend.monitoring.confusion import MISSING_GROUP, ConfusionTable, Counts

ATTRIBUTES = ("region", "customer_age_band")


def _scored(seed: int, *, favour_against: str | None = None) -> ConfusionTable:
    """Confusion counts of a simulated fraud model on generated transactions.

    The score depends on the label only, so the model is fair by construction; with
    `favour_against`, legitimate transactions of that region get a higher score (more false
    alarms, more declines): the injected bias.
    """
    cols = generate_transactions(20_000, seed=seed, fraud_rate=0.1)
    rng = np.random.default_rng(seed)
    y = cols["is_fraud"].astype(bool)
    logit = -2.0 + 4.0 * y + rng.normal(0.0, 1.2, y.size)
    if favour_against is not None:
        logit = np.where((cols["region"] == favour_against) & ~y, logit + 1.5, logit)
    predicted = 1.0 / (1.0 + np.exp(-logit)) >= 0.5
    return ConfusionTable.from_arrays(y, predicted, {a: cols[a] for a in ATTRIBUTES})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_fair_model_is_not_flagged(seed: int) -> None:
    # GIVEN a model whose scores do not depend on region or age band
    report = bias_report(_scored(seed))
    # THEN no attribute shows bias, and no four-fifths violation is claimed from noise
    assert not report.detected
    for a in report.attributes:
        assert not a.four_fifths_violation
        assert a.equalized_odds_difference is not None and a.equalized_odds_difference < 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_injected_bias_is_flagged_on_the_right_attribute_and_group(seed: int) -> None:
    # GIVEN legitimate customers in the east get more false alarms
    report = bias_report(_scored(seed, favour_against="east"))
    region = next(a for a in report.attributes if a.attribute == "region")
    age = next(a for a in report.attributes if a.attribute == "customer_age_band")
    # THEN region is flagged through its FPR gap and parity gap, with the east on top
    assert region.bias_detected and not age.bias_detected
    fpr = region.false_positive_rate_difference
    dp = region.demographic_parity_difference
    assert fpr is not None and fpr.flagged and fpr.high_group == "east"
    assert dp is not None and dp.flagged and dp.lower > 0
    assert region.equalized_odds_difference == pytest.approx(fpr.value)
    assert region.four_fifths_violation and region.disparate_impact is not None
    assert region.disparate_impact < 0.8


def test_small_groups_are_reported_as_insufficient_not_dropped() -> None:
    # GIVEN one group far below the minimum size, with an extreme rate
    table = ConfusionTable(
        overall=Counts(),
        groups={
            "region": {
                "big-a": Counts(tp=50, fp=20, tn=400, fn=30),
                "big-b": Counts(tp=48, fp=22, tn=410, fn=25),
                "tiny": Counts(tp=0, fp=9, tn=1, fn=0),
            }
        },
    )
    attr = bias_report(table, BiasConfig(min_group_size=100)).attributes[0]
    # THEN it is listed with its rates and intervals but not compared
    assert attr.insufficient == ["tiny"]
    assert [g.group for g in attr.groups] == ["big-a", "big-b", "tiny"]
    tiny = attr.groups[2].selection_rate
    assert tiny.value == 0.9 and tiny.lower < 0.6  # wide Wilson interval on 10 rows
    assert attr.demographic_parity_difference is not None
    assert {
        attr.demographic_parity_difference.high_group,
        attr.demographic_parity_difference.low_group,
    } == {"big-a", "big-b"}
    assert not attr.bias_detected


def test_rates_without_enough_positives_are_left_out_of_the_tpr_gap() -> None:
    table = ConfusionTable(
        groups={
            "band": {
                "young": Counts(tp=1, fp=10, tn=500, fn=2),
                "old": Counts(tp=40, fp=12, tn=480, fn=10),
            }
        }
    )
    attr = bias_report(table, BiasConfig(min_class_size=20)).attributes[0]
    assert attr.true_positive_rate_difference is None
    assert attr.false_positive_rate_difference is not None


def test_confusion_counts_from_arrays_keep_missing_groups_and_add_up() -> None:
    y = np.array([1, 0, 1, 0, 1, 0])
    p = np.array([1, 1, 0, 0, 1, 0])
    region = np.array(["a", "a", "b", None, "b", float("nan")], dtype=object)
    t = ConfusionTable.from_arrays(y, p, {"region": region})
    assert t.overall == Counts(tp=2, fp=1, fn=1, tn=2)
    assert t.groups["region"][MISSING_GROUP] == Counts(tn=2)
    assert sum((c for c in t.groups["region"].values()), Counts()) == t.overall
    doubled = t + t
    assert doubled.overall.n == 12 and doubled.groups["region"]["a"] == Counts(tp=2, fp=2)
