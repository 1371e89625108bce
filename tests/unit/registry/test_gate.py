"""The validation gate: its metrics, each check, its configuration and its verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from aibackend.errors import ConfigError
from aibackend.models.card import Feature, ModelCard
from aibackend.training.gate import (
    BiasGate,
    GateConfig,
    Holdout,
    Production,
    average_precision,
    bias_checks,
    describe,
    evaluate,
    load_config,
    roc_auc,
    schema_problems,
    threshold_checks,
)
from tests.conftest import ROOT, build_tiny_model

RNG = np.random.default_rng(3)


def _holdout(n: int = 4_000, weights: tuple[float, ...] = (1.0, -2.0)) -> Holdout:
    """Rows whose labels follow the tiny model with `weights` (so that model ranks them well)."""
    x = RNG.normal(size=(n, len(weights))).astype(np.float32)
    p = 1.0 / (1.0 + np.exp(-(x @ np.asarray(weights)) * 3))
    return Holdout(x=x, y=(RNG.random(n) < p).astype(np.int8))


def _production(folder: Path, weights: tuple[float, ...] = (1.0, -2.0)) -> Production:
    build_tiny_model(folder, weights=weights)
    card = ModelCard.read(folder).model_copy(update={"version": 1})
    return Production(version=1, folder=folder, card=card)


CONFIG = GateConfig(thresholds={"roc_auc": 0.8}, min_improvement=0.0)


@pytest.mark.parametrize("ties", [False, True])
def test_metrics_match_scikit_learn(ties: bool) -> None:
    # GIVEN scores (rounded to create ties) and labels
    y = RNG.integers(0, 2, 5_000)
    p = RNG.random(5_000) * 0.5 + y * 0.3
    if ties:
        p = np.round(p, 1)
    # THEN the gate's numpy metrics equal scikit-learn's
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert average_precision(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)


def test_roc_auc_of_a_one_class_holdout_says_why_it_cannot_be_computed() -> None:
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(np.zeros(10), np.linspace(0, 1, 10))


def test_a_worse_candidate_is_rejected_naming_the_failing_checks(tmp_path: Path) -> None:
    # GIVEN production ranking the holdout well and a candidate with the signs flipped
    prod = _production(tmp_path / "prod")
    worse = build_tiny_model(tmp_path / "cand", weights=(-1.0, 2.0))
    # WHEN the gate evaluates it on the same holdout
    verdict = evaluate(worse, CONFIG, holdout=_holdout(), production=prod)
    # THEN it is rejected for its absolute AUC and for losing to production
    assert not verdict.approved
    assert {c.name for c in verdict.failed} == {"threshold:roc_auc", "beats_production"}
    comparison = next(c for c in verdict.checks if c.name == "beats_production")
    assert comparison.value is not None and comparison.value < -0.5
    assert verdict.compared_with == 1 and verdict.holdout_rows == 4_000
    assert describe(verdict)[-1] == "rejected"


def test_an_equal_or_better_candidate_passes(tmp_path: Path) -> None:
    # GIVEN production with a weak weight vector, and two candidates: the same, and a better one
    holdout = _holdout()
    prod = _production(tmp_path / "prod", weights=(1.0, -1.0))
    same = build_tiny_model(tmp_path / "same", weights=(1.0, -1.0))
    better = build_tiny_model(tmp_path / "better", weights=(1.0, -2.0))
    # WHEN the gate evaluates both on the same holdout
    v_same = evaluate(same, CONFIG, holdout=holdout, production=prod)
    v_better = evaluate(better, CONFIG, holdout=holdout, production=prod)
    # THEN both are approved: the equal one by a zero margin, the better by a positive one
    assert v_same.approved and v_better.approved
    margins = [
        next(c.value for c in v.checks if c.name == "beats_production") for v in (v_same, v_better)
    ]
    assert margins[0] == 0.0 and margins[1] is not None and margins[1] > 0.0
    # AND a configured margin the better one does not reach rejects it
    strict = CONFIG.model_copy(update={"min_improvement": 0.5})
    assert not evaluate(better, strict, holdout=holdout, production=prod).approved


def test_a_changed_input_schema_is_refused(tmp_path: Path) -> None:
    # GIVEN a candidate taking three features where production takes two
    prod = _production(tmp_path / "prod")
    wider = build_tiny_model(tmp_path / "cand", weights=(1.0, -2.0, 0.5))
    # WHEN the gate evaluates it (without a holdout: that one cannot feed both)
    verdict = evaluate(wider, GateConfig(), production=prod)
    # THEN it is rejected for its schema, naming what changed; the comparison does not apply
    assert [c.name for c in verdict.failed] == ["input_schema"]
    schema = next(c for c in verdict.checks if c.name == "input_schema")
    assert "changed shape" in schema.detail and "features changed" in schema.detail
    comparison = next(c for c in verdict.checks if c.name == "beats_production")
    assert comparison.passed is None and "no holdout" in comparison.detail


def _card(tmp_path: Path, **update: object) -> ModelCard:
    card = ModelCard.read(build_tiny_model(tmp_path / str(len(list(tmp_path.iterdir())))))
    return card.model_copy(update=update)


def test_schema_rules_allow_appended_categories_only(tmp_path: Path) -> None:
    base = _card(tmp_path)
    cat = Feature(name="x1", kind="categorical", categories=("a", "b"))
    old = base.model_copy(update={"features": (base.features[0], cat)})
    appended = cat.model_copy(update={"categories": ("a", "b", "c")})
    reordered = cat.model_copy(update={"categories": ("b", "a")})
    # THEN a category added at the end is compatible; a reordering is not (codes would shift)
    assert (
        schema_problems(old, old.model_copy(update={"features": (base.features[0], appended)}))
        == []
    )
    [problem] = schema_problems(
        old, old.model_copy(update={"features": (base.features[0], reordered)})
    )
    assert "keep their order" in problem
    # AND renamed inputs, new required inputs and changed classes are each named
    renamed = base.model_copy(update={"inputs": (base.inputs[0].model_copy(update={"name": "x"}),)})
    problems = schema_problems(base, renamed)
    assert problems == ["input 'features' was removed", "new required input 'x'"]
    assert schema_problems(base, base.model_copy(update={"classes": ("a", "b")})) == [
        "classes changed ('neg', 'pos') -> ('a', 'b')"
    ]


def test_threshold_checks_fail_below_the_minimum_and_on_a_missing_metric() -> None:
    checks = threshold_checks(
        {"roc_auc": 0.84}, GateConfig(thresholds={"roc_auc": 0.85, "pr_auc": 0.3})
    )
    assert [(c.name, c.passed) for c in checks] == [
        ("threshold:pr_auc", False),
        ("threshold:roc_auc", False),
    ]
    assert "reports no 'pr_auc'" in checks[0].detail


def _groups(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = (RNG.random(2 * n) < 0.2).astype(np.int8)
    group = np.array(["a"] * n + ["b"] * n, dtype=object)
    return y, y.astype(np.float64), group


BIAS = GateConfig(bias=BiasGate(attributes=("region",), min_group_size=200))


def test_the_bias_check_flags_an_injected_bias() -> None:
    # GIVEN a model perfect on group a, and that misses half of group b's positives
    y, p, group = _groups(3_000)
    missed = (group == "b") & (y == 1) & (RNG.random(y.size) < 0.5)
    p[missed] = 0.0
    # WHEN the bias check runs at the decision threshold
    [check] = bias_checks(y, p, {"region": group}, BIAS)
    # THEN it fails: the TPR gap (~0.5) is far above 0.1 and not sampling noise
    assert check.name == "bias:region" and check.passed is False
    assert check.value == pytest.approx(0.5, abs=0.06) and check.threshold == 0.1
    assert "true_positive_rate gap" in check.detail


def test_the_bias_check_passes_equal_treatment_and_reports_small_groups() -> None:
    # GIVEN the same model quality for a and b, and a group of 50 rows
    y, p, group = _groups(3_000)
    y = np.r_[y, np.ones(50, dtype=np.int8)]
    p = np.r_[p, np.zeros(50)]
    group = np.r_[group, np.array(["tiny"] * 50, dtype=object)]
    # WHEN the bias check runs, asked also for an attribute the holdout lacks
    config = BIAS.model_copy(update={"bias": BiasGate(attributes=("region", "age"))})
    age, region = sorted(bias_checks(y, p, {"region": group}, config), key=lambda c: c.name)
    # THEN the region passes, its small group reported as insufficient, not compared
    assert region.passed is True and region.value == 0.0
    assert "insufficient groups" in region.detail and "'tiny'" in region.detail
    # AND the missing attribute is recorded as not applicable, with the reason
    assert (age.name, age.passed) == ("bias:age", None) and "no 'age' column" in age.detail


def test_configuration_defaults_and_the_project_file(tmp_path: Path) -> None:
    # GIVEN no training.toml: every model gets the defaults
    assert load_config("fraud", tmp_path) == GateConfig()
    # AND the project's file configures fraud's thresholds and its bias attributes
    fraud = load_config("fraud", ROOT / "functions")
    assert fraud.thresholds["roc_auc"] >= 0.85
    assert fraud.bias.attributes == ("customer_age_band", "region")
    assert load_config("sentiment", ROOT / "functions") == GateConfig()


def test_a_bad_configuration_names_the_key_to_fix(tmp_path: Path) -> None:
    (tmp_path / "training.toml").write_text("[gate.fraud]\nmin_improvment = 0.1\n")
    with pytest.raises(ConfigError, match=r"gate\.fraud\.min_improvment: Extra inputs"):
        load_config("fraud", tmp_path)
