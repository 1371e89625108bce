"""The label ledger and window accuracy: late labels land in their prediction's window,
re-deliveries count once, and the metrics match their definitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from aibackend.monitoring.accuracy import accuracy_report, calibration, roc_auc
from aibackend.monitoring.labels import (
    CapturedPrediction,
    JoinedWindow,
    Label,
    SqliteLabelStore,
)

T0 = datetime(2024, 3, 1, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _prediction(
    i: int, at: datetime, score: float, region: str | None = "north"
) -> CapturedPrediction:
    return CapturedPrediction(
        inference_id=f"inf-{i}",
        time=at,
        score=score,
        predicted=int(score >= 0.5),
        groups={"region": region},
    )


def _label(i: int, y: int, days_later: float = 3.0, at: datetime = T0) -> Label:
    return Label(inference_id=f"inf-{i}", label=y, received_at=at + timedelta(days=days_later))


@pytest.fixture
def store(tmp_path: Path) -> SqliteLabelStore:
    return SqliteLabelStore(tmp_path / "ledger.sqlite")


def test_a_late_label_updates_the_window_of_its_prediction_time(store: SqliteLabelStore) -> None:
    # GIVEN predictions in two hourly windows, none labelled yet
    store.put_predictions([_prediction(1, T0 + timedelta(minutes=5), 0.9)])
    store.put_predictions([_prediction(2, T0 + HOUR + timedelta(minutes=5), 0.2)])
    assert accuracy_report(store.window(T0, T0 + HOUR)).completeness == 0.0
    # WHEN the label of the first prediction arrives three days later
    written = store.put_labels([_label(1, 1)])
    # THEN it counts in the first window (by prediction time), not in the window it arrived in
    assert written.new == 1 and written.prediction_times == [T0 + timedelta(minutes=5)]
    first, second = store.window(T0, T0 + HOUR), store.window(T0 + HOUR, T0 + 2 * HOUR)
    assert (first.labelled, first.predictions, second.labelled) == (1, 1, 0)
    assert accuracy_report(first).completeness == 1.0


def test_labels_and_captures_delivered_twice_count_once(store: SqliteLabelStore) -> None:
    # GIVEN a capture delivered twice and a label delivered twice (also within one batch)
    assert store.put_predictions([_prediction(1, T0, 0.7)] * 2) == 1
    assert store.put_predictions([_prediction(1, T0, 0.7)]) == 0
    store.put_labels([_label(1, 1)])
    again = store.put_labels([_label(1, 1), _label(1, 1)])
    # THEN the window has one prediction with one label
    assert (again.new, again.corrected, again.duplicates) == (0, 0, 2)
    assert again.prediction_times == []
    w = store.window(T0, T0 + HOUR)
    assert (w.predictions, w.labelled) == (1, 1)


def test_a_later_different_label_is_a_correction_and_an_older_one_is_ignored(
    store: SqliteLabelStore,
) -> None:
    store.put_predictions([_prediction(1, T0, 0.7)])
    store.put_labels([_label(1, 0, days_later=1)])
    # WHEN a chargeback later says it was fraud, then a stale copy of the first label arrives
    corrected = store.put_labels([_label(1, 1, days_later=5)])
    stale = store.put_labels([_label(1, 0, days_later=2)])
    # THEN the correction wins and the stale label changes nothing
    assert corrected.corrected == 1 and corrected.prediction_times == [T0]
    assert stale.corrected == 0 and stale.duplicates == 1
    assert store.window(T0, T0 + HOUR).labels.tolist() == [1]


def test_a_label_before_its_capture_joins_when_the_capture_arrives(store: SqliteLabelStore) -> None:
    written = store.put_labels([_label(7, 1)])
    assert written.unmatched == 1 and written.prediction_times == []
    assert store.window(T0, T0 + HOUR).labelled == 0
    store.put_predictions([_prediction(7, T0, 0.8)])
    assert store.window(T0, T0 + HOUR).labelled == 1


def test_the_ledger_survives_reopening(tmp_path: Path) -> None:
    SqliteLabelStore(tmp_path / "l.sqlite").put_predictions([_prediction(1, T0, 0.4)])
    SqliteLabelStore(tmp_path / "l.sqlite").put_labels([_label(1, 0)])
    assert SqliteLabelStore(tmp_path / "l.sqlite").window(T0, T0 + HOUR).labelled == 1


def test_window_metrics_match_their_definitions(store: SqliteLabelStore) -> None:
    # GIVEN 6 predictions in the window, 5 of them labelled, one group attribute
    scores = [0.9, 0.8, 0.6, 0.4, 0.3, 0.1]
    labels = [1, 0, 1, 1, 0, None]
    store.put_predictions(
        [
            _prediction(i, T0 + timedelta(minutes=i), s, "a" if i < 3 else "b")
            for i, s in enumerate(scores)
        ]
    )
    store.put_labels([_label(i, y) for i, y in enumerate(labels) if y is not None])
    # WHEN the window's report is computed at the serving decisions (score >= 0.5)
    r = accuracy_report(store.window(T0, T0 + HOUR))
    # THEN TP=2 (0.9, 0.6), FP=1 (0.8), FN=1 (0.4), TN=1 (0.3)
    c = r.confusion.overall
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 1, 1, 1)
    assert r.precision == pytest.approx(2 / 3) and r.recall == pytest.approx(2 / 3)
    assert r.f1 == pytest.approx(2 / 3)
    # AND AUC counts ordered (positive, negative) pairs: 0.9 and 0.6 and 0.4 beat 0.3, 0.9 beats
    # 0.8: 4 of 6
    assert r.roc_auc == pytest.approx(4 / 6)
    assert r.completeness == pytest.approx(5 / 6) and r.labelled == 5 and r.positives == 3
    assert r.calibration.brier == pytest.approx(np.mean([0.01, 0.64, 0.16, 0.36, 0.09]))
    assert r.confusion.groups["region"]["a"].n == 3 and r.confusion.groups["region"]["b"].n == 2
    # AND another operating point can be evaluated from the same join
    assert accuracy_report(store.window(T0, T0 + HOUR), threshold=0.35).recall == 1.0


def test_roc_auc_handles_ties_and_agrees_with_the_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.3
    s = np.round(rng.random(400) * 0.5 + 0.3 * y, 1)  # heavy ties
    pos, neg = s[y], s[~y]
    diff = pos[:, None] - neg[None, :]
    pairwise = float(np.mean((diff > 0) + 0.5 * (diff == 0)))
    assert roc_auc(y, s) == pytest.approx(pairwise, rel=1e-12)
    assert roc_auc(np.ones(3, dtype=bool), np.array([0.1, 0.2, 0.3])) is None


def test_calibration_error_is_small_when_calibrated_and_large_when_not() -> None:
    rng = np.random.default_rng(1)
    s = rng.random(50_000)
    y = rng.random(50_000) < s  # calibrated by construction
    good = calibration(y, s)
    bad = calibration(y, np.clip(s * 0.5, 0, 1))  # the model halves every probability
    assert good.ece is not None and bad.ece is not None
    assert good.ece < 0.01 and bad.ece == pytest.approx(0.25, abs=0.02)
    assert sum(b.count for b in good.bins) == 50_000
    assert good.bins[9].positive_rate == pytest.approx(0.95, abs=0.02)


def test_an_empty_window_reports_nothing_rather_than_zeros(store: SqliteLabelStore) -> None:
    empty = store.window(T0, T0 + HOUR)
    assert isinstance(empty, JoinedWindow)
    r = accuracy_report(empty)
    assert (r.predictions, r.completeness, r.roc_auc, r.precision, r.calibration.ece) == (
        0,
        0.0,
        None,
        None,
        None,
    )


def test_captures_validate_their_fields() -> None:
    with pytest.raises(ValueError, match="less than or equal to 1"):
        CapturedPrediction(inference_id="x", time=T0, score=1.5, predicted=1)
    naive = CapturedPrediction(inference_id="x", time=datetime(2024, 1, 1), score=0.5, predicted=1)
    assert naive.time.tzinfo is UTC
