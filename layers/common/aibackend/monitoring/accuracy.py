"""Model quality of a window from the label ledger's join: ROC AUC, precision, recall, F1,
calibration (reliability bins, expected calibration error, Brier score), label completeness and
the per-group confusion counts that bias metrics and the window's profile take."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from aibackend.monitoring.confusion import ConfusionTable
from aibackend.monitoring.labels import JoinedWindow


class ReliabilityBin(BaseModel):
    """Rows whose score fell in [lower, upper): their mean score against their positive rate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lower: float
    upper: float
    count: int
    mean_score: float | None
    positive_rate: float | None


class Calibration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bins: list[ReliabilityBin]
    #: Expected calibration error: sum over bins of (count / n) * |positive_rate - mean_score|
    #: (Naeini et al. 2015), equal-width bins.
    ece: float | None
    #: Mean squared error of the score as a probability (Brier 1950).
    brier: float | None


class AccuracyReport(BaseModel):
    """Quality metrics of one window; None where the window's labels cannot define them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: datetime
    end: datetime
    predictions: int
    labelled: int
    completeness: float = Field(description="labelled / predictions in the window")
    positives: int
    roc_auc: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    threshold: float | None = Field(description="None: the decisions captured at serving time")
    confusion: ConfusionTable
    calibration: Calibration


def accuracy_report(
    window: JoinedWindow, *, threshold: float | None = None, bins: int = 10
) -> AccuracyReport:
    """Metrics of the labelled rows of `window`.

    The decision is the one captured at serving time, or `score >= threshold` when a
    threshold is given (to see what another operating point would have done).
    """
    y = window.labels.astype(bool)
    s = window.scores
    pred = window.predicted.astype(bool) if threshold is None else s >= threshold
    table = ConfusionTable.from_arrays(y, pred, window.groups)
    c = table.overall
    precision, recall = _ratio(c.tp, c.tp + c.fp), _ratio(c.tp, c.tp + c.fn)
    f1 = (
        None
        if precision is None or recall is None or precision + recall == 0
        else 2 * precision * recall / (precision + recall)
    )
    return AccuracyReport(
        start=window.start,
        end=window.end,
        predictions=window.predictions,
        labelled=window.labelled,
        completeness=window.labelled / window.predictions if window.predictions else 0.0,
        positives=c.positives,
        roc_auc=roc_auc(y, s),
        precision=precision,
        recall=recall,
        f1=f1,
        threshold=threshold,
        confusion=table,
        calibration=calibration(y, s, bins),
    )


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    """Exact ROC AUC = P(score of a positive > score of a negative) + 0.5 P(tie), from the
    Mann-Whitney U statistic with tied scores given their average rank. None with one class."""
    y = np.asarray(y, dtype=bool)
    pos = int(y.sum())
    neg = int(y.size - pos)
    if pos == 0 or neg == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)  # 1-based rank of each distinct score's last copy
    avg_rank = upper - (counts - 1) / 2.0
    rank_sum = float(avg_rank[inverse][y].sum())
    return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg)


def calibration(y: np.ndarray, scores: np.ndarray, bins: int = 10) -> Calibration:
    """Reliability diagram on `bins` equal-width bins of [0, 1], ECE and Brier score."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    y = np.asarray(y, dtype=np.float64)
    s = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    idx = np.minimum((s * bins).astype(np.int64), bins - 1)
    count = np.bincount(idx, minlength=bins)
    score_sum = np.bincount(idx, weights=s, minlength=bins)
    pos_sum = np.bincount(idx, weights=y, minlength=bins)
    out = []
    for b in range(bins):
        n = int(count[b])
        out.append(
            ReliabilityBin(
                lower=b / bins,
                upper=(b + 1) / bins,
                count=n,
                mean_score=float(score_sum[b] / n) if n else None,
                positive_rate=float(pos_sum[b] / n) if n else None,
            )
        )
    if s.size == 0:
        return Calibration(bins=out, ece=None, brier=None)
    nz = count > 0
    ece = float(np.sum(np.abs(pos_sum[nz] - score_sum[nz])) / s.size)
    brier = float(np.mean((s - y) ** 2))
    return Calibration(bins=out, ece=ece, brier=brier)


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None
