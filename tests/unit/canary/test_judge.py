"""The canary judge: continue, promote or roll back, from per-version observations."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from aibackend.canary import VersionStats, excess_p_value, judge
from aibackend.ports import Canary, CanaryCriteria

START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _canary(**criteria: float) -> Canary:
    return Canary(
        id="c1",
        candidate=2,
        champion=1,
        started_at=START,
        window_s=60,
        criteria=CanaryCriteria(**criteria),
        actor="test",
    )


def _stats(
    version: int,
    n: int,
    *,
    errors: int = 0,
    latency_ms: float = 5.0,
    scores: np.ndarray | None = None,
) -> VersionStats:
    s = VersionStats(version)
    for i in range(n):
        score = [] if scores is None else [float(scores[i])]
        s.add(latency_ms, error=i < errors, scores=score)
    return s


def _scores(seed: int, n: int, shift: float = 0.0) -> np.ndarray:
    """Fraud-like scores: mostly near 0, a tail towards 1."""
    return np.clip(np.random.default_rng(seed).beta(0.5, 8, n) + shift, 0, 1)


AT_END = START + timedelta(seconds=61)
MIDWAY = START + timedelta(seconds=20)


def test_a_healthy_candidate_is_promoted_at_the_end_of_the_window_not_before() -> None:
    # GIVEN candidate and champion with the same error rate, latency and score distribution
    champion = _stats(1, 900, errors=9, scores=_scores(1, 900))
    candidate = _stats(2, 100, errors=1, scores=_scores(2, 100))
    canary = _canary(min_requests=50)
    # WHEN judged midway THEN it continues, nothing failed
    midway = judge(canary, champion, candidate, MIDWAY)
    assert midway.outcome == "continue" and not midway.failed
    # WHEN judged once the window is over THEN it is promoted with every check passed
    end = judge(canary, champion, candidate, AT_END)
    assert end.outcome == "promote", end.reason
    assert [(c.name, c.passed) for c in end.checks] == [
        ("min_requests", True),
        ("error_rate_delta", True),
        ("p99_ratio", True),
        ("score_drift", True),
    ]


def test_a_candidate_that_fails_is_rolled_back_as_soon_as_the_excess_is_certain() -> None:
    # GIVEN a candidate failing 30 of 60 requests, the champion 2 of 540
    champion = _stats(1, 540, errors=2)
    candidate = _stats(2, 60, errors=30)
    # WHEN judged midway
    verdict = judge(_canary(min_requests=50), champion, candidate, MIDWAY)
    # THEN it rolls back now, and the evidence has the measured delta, threshold and sizes
    assert verdict.outcome == "rollback"
    [failed] = verdict.failed
    assert failed.name == "error_rate_delta"
    assert failed.value == pytest.approx(30 / 60 - 2 / 540)
    assert failed.threshold == 0.02
    assert (failed.candidate_samples, failed.champion_samples) == (60, 540)
    assert "30/60 errors" in verdict.reason


def test_an_uncertain_error_excess_waits_for_the_end_of_the_window() -> None:
    # GIVEN 2 errors in 50 candidate requests against 1 in 450: over 2% but not significant
    champion, candidate = _stats(1, 450, errors=1), _stats(2, 50, errors=2)
    canary = _canary(min_requests=50)
    # THEN midway it keeps observing; at the end the estimate decides (4% - 0.2% > 2%)
    assert judge(canary, champion, candidate, MIDWAY).outcome == "continue"
    end = judge(canary, champion, candidate, AT_END)
    assert end.outcome == "rollback" and end.failed[0].name == "error_rate_delta"


def test_a_shifted_score_distribution_is_rolled_back_with_the_drift_statistics() -> None:
    # GIVEN a candidate whose scores are 0.3 higher than the champion's
    champion = _stats(1, 900, scores=_scores(1, 900))
    candidate = _stats(2, 100, scores=_scores(2, 100, shift=0.3))
    # WHEN judged midway
    verdict = judge(_canary(min_requests=50), champion, candidate, MIDWAY)
    # THEN the score drift breaches: scores moved by ~0.3 (Wasserstein-1), significant by KS
    assert verdict.outcome == "rollback"
    [failed] = verdict.failed
    assert failed.name == "score_drift" and failed.value is not None and failed.value > 0.25
    # (the sketches' quantiles are randomized: about 0.3, within the KLL error bound)
    assert re.search(r"scores moved by 0\.(29|30)\d* \(Wasserstein-1", failed.detail), failed.detail
    assert "KS p = " in failed.detail
    assert (failed.champion_samples, failed.candidate_samples) == (900, 100)


def test_score_noise_alone_never_breaches() -> None:
    # GIVEN 20 canaries whose candidate draws scores from the champion's distribution
    canary = _canary(min_requests=30, max_score_drift=0.05)
    breaches = 0
    for seed in range(20):
        champion = _stats(1, 270, scores=_scores(seed, 270))
        candidate = _stats(2, 30, scores=_scores(seed + 100, 30))
        breaches += judge(canary, champion, candidate, AT_END).outcome == "rollback"
    # THEN the KS condition keeps sampling noise from rolling any back at alpha 0.01
    assert breaches <= 1


def test_a_slower_candidate_is_rolled_back_on_its_p99_at_the_end() -> None:
    champion = _stats(1, 450, latency_ms=5)
    candidate = _stats(2, 50, latency_ms=12)
    canary = _canary(min_requests=50)
    # THEN latency is not judged midway, and breaches at the end (x2.4 > x1.5)
    assert judge(canary, champion, candidate, MIDWAY).outcome == "continue"
    end = judge(canary, champion, candidate, AT_END)
    assert [c.name for c in end.failed] == ["p99_ratio"]
    assert end.failed[0].value == pytest.approx(2.4)


def test_a_window_without_enough_traffic_rolls_back_for_lack_of_evidence() -> None:
    verdict = judge(_canary(min_requests=50), _stats(1, 200), _stats(2, 12), AT_END)
    assert verdict.outcome == "rollback"
    assert verdict.failed[0].name == "min_requests"
    assert "not enough traffic" in verdict.reason


def test_answers_without_scores_skip_the_score_check() -> None:
    verdict = judge(_canary(min_requests=10), _stats(1, 90), _stats(2, 10), AT_END)
    assert verdict.outcome == "promote"
    assert "no results[].score" in verdict.checks[-1].detail


def test_the_excess_test_is_one_sided_around_the_margin() -> None:
    assert excess_p_value(50, 100, 0, 100, 0.02) < 1e-6
    assert excess_p_value(2, 100, 2, 100, 0.02) > 0.5


def test_interim_looks_share_alpha_so_ticking_often_does_not_add_false_rollbacks() -> None:
    # GIVEN a small drift, p = 1e-3: significant at alpha 0.01 on a single look
    champion = _stats(1, 300, scores=_scores(1, 300))
    candidate = _stats(2, 60, scores=_scores(2, 60, shift=0.007))
    canary = _canary(min_requests=50, max_score_drift=0.005)
    single = judge(canary, champion, candidate, MIDWAY, looks=1).checks[-1]
    assert single.passed is False, single.detail
    # WHEN the window is judged on 30 ticks THEN one tick's evidence is not enough to end it
    many = judge(canary, champion, candidate, MIDWAY, looks=30)
    assert many.outcome == "continue", many.reason
    assert "different when < 0.000333" in many.checks[-1].detail


def _fraud_like(seed: int, n: int, bulk_scale: float = 1.0) -> np.ndarray:
    """Most scores within 1e-4 of 0 (times `bulk_scale`), 5% in a tail between 0.5 and 1."""
    rng = np.random.default_rng(seed)
    tail = rng.random(n) < 0.05
    return np.where(tail, rng.uniform(0.5, 1, n), rng.beta(2, 5, n) * 1e-4 * bulk_scale)


def test_a_retrain_that_only_reorders_the_tiny_scores_is_not_a_drift() -> None:
    # GIVEN a candidate whose near-zero scores are all 3x the champion's: every rank moves
    champion = _stats(1, 300, scores=_fraud_like(1, 300))
    candidate = _stats(2, 100, scores=_fraud_like(2, 100, bulk_scale=3.0))
    verdict = judge(_canary(min_requests=50, max_score_drift=0.025), champion, candidate, AT_END)
    # THEN KS finds the distributions different, but the scores barely moved: promoted
    check = verdict.checks[-1]
    assert float(check.detail.split("KS p = ")[1].split()[0]) < 0.01
    assert check.value is not None and check.value < 0.025
    assert verdict.outcome == "promote", verdict.reason
