"""The validation gate: whether a freshly trained candidate may go to staging.

A candidate is approved only if every applicable check passes:

1. `threshold:<metric>`: its metric on its holdout meets the model's absolute minimum;
2. `beats_production`: on the SAME holdout (the candidate's, rebuilt from the training data),
   its key metric minus the production model's is at least `min_improvement`; the production
   graph is scored here with onnxruntime, not trusted from its card (its card's metrics come
   from another holdout);
3. `input_schema`: production's inputs (name, type, shape) and features are still accepted:
   a client that works today keeps working; added inputs must be optional (not required by
   the graph), added categories go at the end;
4. `bias:<attribute>`: at the decision threshold, the equalized odds difference (the larger
   of the TPR gap and the FPR gap between groups, `aibackend.monitoring.bias`) is not flagged:
   at most `max_equalized_odds_difference`, or not distinguishable from sampling noise
   (Newcombe interval including zero). Groups below `min_group_size` are reported as
   insufficient, not compared.

A check that cannot apply (no production version yet, no holdout builder for the model, the
data lacks the sensitive column) is recorded with `passed=None` and its reason; it does not
block. Configuration: `functions/training.toml`, `[gate.<model>]` (every key documented
there); a model without a section gets `GateConfig()`'s defaults.

Only numpy and onnxruntime are needed (metrics are computed here, not with scikit-learn), so
the gate can run as a Lambda step beside the registry as well as in `aib train`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from aibackend.errors import ConfigError
from aibackend.models.card import MODEL_FILE, ModelCard
from aibackend.ports import GateCheck, GateVerdict, ModelRegistry
from aibackend.training_config import section_of


class BiasGate(BaseModel):
    """`[gate.<model>.bias]`: the fairness check at the decision threshold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attributes: tuple[str, ...] = ()
    max_equalized_odds_difference: Annotated[float, Field(ge=0, le=1)] = 0.1
    min_group_size: Annotated[int, Field(ge=1)] = 200
    min_class_size: Annotated[int, Field(ge=1)] = 20
    confidence: Annotated[float, Field(gt=0, lt=1)] = 0.95


class GateConfig(BaseModel):
    """`[gate.<model>]` of `functions/training.toml`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_metric: str = "roc_auc"
    #: Metric name -> minimum the candidate must reach on its holdout.
    thresholds: dict[str, float] = Field(default_factory=dict)
    #: Candidate's key metric minus production's, same holdout, must be at least this.
    min_improvement: Annotated[float, Field(ge=-1, le=1)] = 0.0
    #: Score at or above which the model's positive class is decided (bias check).
    decision_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    bias: BiasGate = BiasGate()


def load_config(name: str, functions_dir: Path) -> GateConfig:
    """The gate configuration of model `name` (defaults when the file or section is absent)."""
    return section_of(GateConfig, functions_dir, "gate", name)


# --- holdouts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Holdout:
    """Model-input rows, their 0/1 labels and, per sensitive attribute, each row's group."""

    x: np.ndarray
    y: np.ndarray
    groups: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.ndim != 2 or self.y.shape != (self.x.shape[0],):
            raise ValueError(f"holdout: x {self.x.shape} and y {self.y.shape} do not match")


def _fraud_holdout(channel: Path, card: ModelCard, attributes: tuple[str, ...]) -> Holdout:
    """The fraud job's holdout, rebuilt the way it built it: the latest rows by time."""
    from aibackend.fraud.features import matrix
    from aibackend.training.common import channel_files
    from aibackend.training.fraud import load_channel, time_split

    files = channel_files(channel)
    cols, y, epoch = load_channel(files)
    _, hold = time_split(epoch, float(card.hyperparameters.get("holdout_fraction", 0.2)))
    raw = _columns(files, attributes)
    groups = {a: np.asarray(values, dtype=object)[hold] for a, values in raw.items()}
    return Holdout(x=matrix(cols)[hold].astype(np.float32), y=y[hold], groups=groups)


def _columns(files: list[Path], names: tuple[str, ...]) -> dict[str, list[str]]:
    """The columns of `names` that every file has, streamed (rows are not kept: ~3x faster
    than `read_csv_columns` on the 500k-row default); a name some file lacks is left out."""
    import csv
    import gzip

    cols: dict[str, list[str]] = {}
    for i, path in enumerate(files):
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            wanted = [n for n in names if n in header and (i == 0 or n in cols)]
            if i == 0:
                cols = {n: [] for n in wanted}
            for n in set(cols) - set(wanted):
                del cols[n]
            index = [(cols[n], header.index(n)) for n in wanted]
            for row in reader:
                for values, j in index:
                    values.append(row[j])
    return cols


#: How to rebuild a model's holdout from its training channel. Models not listed get the
#: absolute thresholds (from their card) and the schema check only.
HOLDOUTS: dict[str, Callable[[Path, ModelCard, tuple[str, ...]], Holdout]] = {
    "fraud": _fraud_holdout,
}


# --- metrics (numpy only) -----------------------------------------------------------------


def _average_ranks(p: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    return ((upper - counts + 1 + upper) / 2.0)[inverse]


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied scores counted half)."""
    pos = np.asarray(y).astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both classes in the holdout")
    ranks = _average_ranks(np.asarray(p, dtype=np.float64))
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (scikit-learn's definition: sum of precision x recall increments)."""
    t = np.asarray(y).astype(bool)
    order = np.argsort(-np.asarray(p, dtype=np.float64), kind="stable")
    scores, t = np.asarray(p)[order], t[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), t.size - 1]  # end of each tied block
    tp = np.cumsum(t)[last]
    precision = tp / (last + 1)
    recall = tp / max(int(t.sum()), 1)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "roc_auc": roc_auc,
    "pr_auc": average_precision,
}


def score(model_dir: Path, card: ModelCard, x: np.ndarray) -> np.ndarray:
    """Positive-class probability of each row, from the version's ONNX graph."""
    from aibackend.models.runtime import create_session

    session = create_session(model_dir / MODEL_FILE)
    outputs = [o.name for o in session.get_outputs()]
    proba = np.asarray(session.run(outputs, {card.inputs[0].name: x})[-1], dtype=np.float64)
    return proba[:, -1] if proba.ndim == 2 else proba


# --- checks -------------------------------------------------------------------------------


def threshold_checks(metrics: Mapping[str, float], config: GateConfig) -> list[GateCheck]:
    """One check per configured minimum."""
    checks = []
    for metric, minimum in sorted(config.thresholds.items()):
        value = metrics.get(metric)
        checks.append(
            GateCheck(
                name=f"threshold:{metric}",
                passed=value is not None and value >= minimum,
                value=value,
                threshold=minimum,
                detail="" if value is not None else f"the candidate reports no {metric!r}",
            )
        )
    return checks


def comparison_check(candidate: float, production: float, config: GateConfig) -> GateCheck:
    diff = candidate - production
    return GateCheck(
        name="beats_production",
        passed=diff >= config.min_improvement,
        value=diff,
        threshold=config.min_improvement,
        detail=(
            f"{config.key_metric} on the candidate's holdout: candidate {candidate:.4f}, "
            f"production {production:.4f}"
        ),
    )


def schema_problems(production: ModelCard, candidate: ModelCard) -> list[str]:
    """Why a client of `production` would break against `candidate` (empty: compatible)."""
    problems: list[str] = []
    new_inputs = {i.name: i for i in candidate.inputs}
    for old in production.inputs:
        new = new_inputs.pop(old.name, None)
        if new is None:
            problems.append(f"input {old.name!r} was removed")
        elif new.dtype != old.dtype:
            problems.append(f"input {old.name!r} changed type {old.dtype} -> {new.dtype}")
        elif new.shape != old.shape:
            problems.append(f"input {old.name!r} changed shape {old.shape} -> {new.shape}")
    problems += [f"new required input {n!r}" for n in new_inputs]  # card inputs are required
    old_f = [(f.name, f.kind) for f in production.features]
    new_f = [(f.name, f.kind) for f in candidate.features]
    if new_f != old_f:
        problems.append(f"features changed: {old_f} -> {new_f}")
    else:
        for old_feat, new_feat in zip(production.features, candidate.features, strict=True):
            if new_feat.categories[: len(old_feat.categories)] != old_feat.categories:
                problems.append(
                    f"feature {old_feat.name!r}: categories must keep their order "
                    "(new ones go at the end)"
                )
    if production.classes != candidate.classes:
        problems.append(f"classes changed {production.classes} -> {candidate.classes}")
    return problems


def schema_check(production: ModelCard, candidate: ModelCard) -> GateCheck:
    problems = schema_problems(production, candidate)
    return GateCheck(
        name="input_schema",
        passed=not problems,
        detail="; ".join(problems) or f"accepts what v{production.version} accepts",
    )


def bias_checks(
    y: np.ndarray, p: np.ndarray, groups: Mapping[str, np.ndarray], config: GateConfig
) -> list[GateCheck]:
    """One check per configured sensitive attribute (`aibackend.monitoring.bias`)."""
    from aibackend.monitoring.bias import BiasConfig, bias_report
    from aibackend.monitoring.confusion import ConfusionTable

    cfg = config.bias
    missing = [a for a in cfg.attributes if a not in groups]
    checks = [
        GateCheck(name=f"bias:{a}", passed=None, detail=f"the holdout has no {a!r} column")
        for a in missing
    ]
    present = {a: groups[a] for a in cfg.attributes if a in groups}
    if not present:
        return checks
    table = ConfusionTable.from_arrays(y, p >= config.decision_threshold, present)
    report = bias_report(
        table,
        BiasConfig(
            min_group_size=cfg.min_group_size,
            min_class_size=cfg.min_class_size,
            confidence=cfg.confidence,
            tolerance=cfg.max_equalized_odds_difference,
        ),
    )
    for attr in report.attributes:
        gaps = [
            g
            for g in (attr.true_positive_rate_difference, attr.false_positive_rate_difference)
            if g is not None
        ]
        flagged = [g for g in gaps if g.flagged]
        parts = [
            f"{g.metric} gap {g.value:.3f} ({g.high_group} vs {g.low_group}, "
            f"interval {g.lower:.3f}..{g.upper:.3f})"
            for g in gaps
        ]
        if attr.insufficient:
            parts.append(f"insufficient groups (< {cfg.min_group_size} rows): {attr.insufficient}")
        if not gaps:
            parts.insert(0, "fewer than two groups large enough to compare")
        elif not flagged and any(g.value >= cfg.max_equalized_odds_difference for g in gaps):
            parts.insert(0, "over the limit but within sampling noise (interval includes 0)")
        checks.append(
            GateCheck(
                name=f"bias:{attr.attribute}",
                passed=None if not gaps else not flagged,
                value=attr.equalized_odds_difference,
                threshold=cfg.max_equalized_odds_difference,
                detail="; ".join(parts),
            )
        )
    return checks


# --- the gate -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Production:
    """The production version the candidate is compared with."""

    version: int
    folder: Path
    card: ModelCard


def evaluate(
    candidate_dir: Path,
    config: GateConfig,
    *,
    holdout: Holdout | None = None,
    production: Production | None = None,
) -> GateVerdict:
    """Every check on a candidate artifact folder; approved when none failed."""
    card = ModelCard.read(candidate_dir)
    checks: list[GateCheck] = []
    metrics = dict(card.metrics)
    p_candidate: np.ndarray | None = None
    if holdout is not None:
        p_candidate = score(candidate_dir, card, holdout.x)
        metrics.update({m: f(holdout.y, p_candidate) for m, f in METRICS.items()})
    checks += threshold_checks(metrics, config)
    checks.append(_comparison(card, metrics, config, holdout, production))
    if production is None:
        checks.append(GateCheck(name="input_schema", passed=None, detail="no production version"))
    else:
        checks.append(schema_check(production.card, card))
    if holdout is not None and p_candidate is not None:
        checks += bias_checks(holdout.y, p_candidate, holdout.groups, config)
    elif config.bias.attributes:
        checks.append(GateCheck(name="bias", passed=None, detail="no holdout for this model"))
    return GateVerdict(
        approved=not any(c.passed is False for c in checks),
        checks=tuple(checks),
        evaluated_at=datetime.now(UTC),
        compared_with=None if production is None else production.version,
        holdout_rows=None if holdout is None else int(holdout.y.size),
    )


def _comparison(
    card: ModelCard,
    metrics: Mapping[str, float],
    config: GateConfig,
    holdout: Holdout | None,
    production: Production | None,
) -> GateCheck:
    name = "beats_production"
    if production is None:
        return GateCheck(name=name, passed=None, detail="no production version to compare with")
    if holdout is None:
        return GateCheck(name=name, passed=None, detail=f"no holdout builder for {card.name!r}")
    if config.key_metric not in METRICS:
        raise ConfigError(
            f"gate.{card.name}.key_metric {config.key_metric!r}: the gate computes "
            f"{', '.join(METRICS)}"
        )
    if schema_problems(production.card, card):
        return GateCheck(name=name, passed=None, detail="input schema differs: not comparable")
    p_prod = score(production.folder, production.card, holdout.x)
    return comparison_check(
        metrics[config.key_metric], METRICS[config.key_metric](holdout.y, p_prod), config
    )


def run_gate(
    registry: ModelRegistry,
    candidate_dir: Path,
    config: GateConfig,
    *,
    channel: Path | None = None,
) -> GateVerdict:
    """The gate for a registered candidate folder: rebuilds its holdout from `channel` (the
    training data it was trained on) and compares it with the model's production version."""
    card = ModelCard.read(candidate_dir)
    build = HOLDOUTS.get(card.name)
    holdout = (
        None if build is None or channel is None else build(channel, card, config.bias.attributes)
    )
    current = registry.production(card.name)
    if current is None:
        return evaluate(candidate_dir, config, holdout=holdout)
    with tempfile.TemporaryDirectory(prefix="aib-gate-") as tmp:
        folder = registry.download(card.name, current.version, Path(tmp))
        prod = Production(current.version, folder, current.card)
        return evaluate(candidate_dir, config, holdout=holdout, production=prod)


def describe(verdict: GateVerdict) -> list[str]:
    """One line per check (PASS / FAIL / n/a, value against threshold, detail), then the verdict."""
    lines = []
    for c in verdict.checks:
        mark = {True: "PASS", False: "FAIL", None: "n/a "}[c.passed]
        measured = ""
        if c.value is not None:
            measured = f" {c.value:.4f}"
            if c.threshold is not None:
                measured += f" (limit {c.threshold:g})"
        detail = f": {c.detail}" if c.detail else ""
        lines.append(f"{mark} {c.name}{measured}{detail}")
    lines.append("approved" if verdict.approved else "rejected")
    return lines
