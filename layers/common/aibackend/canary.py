"""Canary judgement: is the candidate as good as the champion on live traffic?

Pure functions over per-version observations (`VersionStats`): requests, errors, latency
samples and a sketch of the scores the version answered. `judge` compares candidate and
champion on four criteria (`CanaryCriteria`, per model in `functions/training.toml`
`[canary.<model>]`) and says whether to continue, promote or roll back, with the evidence:

- `min_requests`: at the end of the window, a side answered fewer (not enough evidence);
- `error_rate_delta`: candidate's error rate minus the champion's is over the maximum;
- `p99_ratio`: candidate's p99 latency over the champion's is over the maximum;
- `score_drift`: the score distributions are different (two-sample KS test, p < `alpha`) and
  far apart: their Wasserstein-1 distance, in score units (how far, on average, the scores
  moved), reaches `max_score_drift`.

Before the window ends, a canary is rolled back only as soon as a breach is certain: the
error-rate excess or the score drift is significant at `alpha / looks`, `looks` being how often
the window is judged (Bonferroni over the interim looks: judging every tick must not turn
sampling noise into rollbacks); latency is judged on the whole window. At the end, the error
rate is judged on its estimate and the score drift at `alpha`.

Both score statistics are the drift monitor's (`aibackend.monitoring.drift`, on the
profiles' KLL sketches), the champion's scores as the reference. Either alone misleads on
fraud scores, which are mostly within 1e-4 of 0 with a thin tail near 1: a retrain with
another seed moves the bulk by a few 1e-5, which KS, rank-based, calls a large difference
(distance 0.43, p 5e-12 on 100 vs 300 requests) although no decision changes; and the
Wasserstein distance alone, whichever scale, swings with the few tail scores a short window
sees (0.004 to 0.02 in score units between random splits of one model's answers). Measured on
400 requests: same model 0.007 median, retrained with another seed 0.006, retrained on data
with 20% fraud instead of 1% (declines 0.5% -> 3.3%) 0.05.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from aibackend.monitoring.drift import STD_FLOOR, ColumnDrift, DriftConfig, detect_drift
from aibackend.monitoring.profiles import Profile, ProfileSchema
from aibackend.monitoring.stats import normal_sf
from aibackend.ports import Canary, CanaryCheck, CanaryCriteria
from aibackend.training_config import section_of

#: Latency samples kept per version (the most recent ones): enough for a stable p99.
LATENCY_SAMPLES = 20_000
_SCORE = ProfileSchema(numeric=("score",))
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_window(text: str | float) -> float:
    """Seconds of a window given as seconds or `30s`, `5m`, `1h`."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        m = _DURATION.match(text)
        if m is None:
            raise ValueError(f"window {text!r} is not a duration: use e.g. 90s, 5m or 1h")
        seconds = float(m[1]) * _UNIT_S[m[2] or "s"]
    if not 0 < seconds <= 48 * 3600:
        raise ValueError(f"window {text!r} must be over 0 and at most 48h")
    return seconds


class CanarySettings(CanaryCriteria):
    """A model's `[canary.<model>]` section: the criteria plus the defaults of
    `aib models promote --canary` (`--percent`, `--window`)."""

    percent: Annotated[int, Field(ge=1, le=99)] = 10
    window_s: Annotated[float, Field(alias="window", gt=0)] = 300.0

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("window_s", mode="before")
    @classmethod
    def _duration(cls, v: object) -> float:
        if isinstance(v, str | int | float) and not isinstance(v, bool):
            return parse_window(v)
        raise ValueError("window must be a duration such as 90s, 5m or 1h")

    @property
    def criteria(self) -> CanaryCriteria:
        return CanaryCriteria.model_validate(
            self.model_dump(include=set(CanaryCriteria.model_fields))
        )


def load_settings(name: str, functions_dir: Path) -> CanarySettings:
    """Model `name`'s canary settings from `functions/training.toml` (defaults when the file or
    the section is absent), or a `ConfigError` naming the key and what is wrong."""
    return section_of(CanarySettings, functions_dir, "canary", name)


class VersionStats:
    """What one version answered during a canary: counts, recent latencies, a score sketch."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.requests = 0
        self.errors = 0
        self.latencies_ms: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.scores = Profile.empty(
            _SCORE, delta_id=f"canary-v{version}", scores=False, predicted=False
        )

    def add(self, latency_ms: float | None, *, error: bool, scores: Iterable[float] = ()) -> None:
        """One answer; `latency_ms` None: not a latency sample (a host's warm-up request)."""
        self.requests += 1
        self.errors += int(error)
        if latency_ms is not None:
            self.latencies_ms.append(latency_ms)
        values = np.fromiter(scores, dtype=np.float64)
        if values.size:
            self.scores.add({"score": values})

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p99_ms(self) -> float | None:
        if not self.latencies_ms:
            return None
        return float(np.percentile(np.fromiter(self.latencies_ms, dtype=np.float64), 99))

    @property
    def score_count(self) -> int:
        return self.scores.numeric("score").count

    def summary(self) -> dict[str, float | int | None]:
        return {
            "version": self.version,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "p99_ms": None if (p := self.p99_ms) is None else round(p, 3),
            "scores": self.score_count,
        }


Outcome = Literal["continue", "promote", "rollback"]


class CanaryVerdict(BaseModel):
    """What to do with a canary now, and why."""

    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    reason: str
    checks: tuple[CanaryCheck, ...]
    elapsed_s: float

    @property
    def failed(self) -> tuple[CanaryCheck, ...]:
        return tuple(c for c in self.checks if c.passed is False)


def judge(
    canary: Canary,
    champion: VersionStats,
    candidate: VersionStats,
    now: datetime,
    *,
    looks: int = 1,
) -> CanaryVerdict:
    """Continue, promote (window over, nothing breached) or roll back (a breach: certain before
    the window ends, estimated at its end). `looks`: how many times the window is judged
    before it ends (the runtime's ticks in a window)."""
    elapsed = (now - canary.started_at).total_seconds()
    final = elapsed >= canary.window_s
    c = canary.criteria
    alpha = c.alpha if final else c.alpha / max(1, looks)
    enough = min(champion.requests, candidate.requests) >= c.min_requests
    checks = (
        _requests_check(c, champion, candidate, final),
        _error_check(c, champion, candidate, final, enough, alpha),
        _latency_check(c, champion, candidate, final, enough),
        _score_check(c, champion, candidate, final, enough, alpha),
    )
    failed = [ch for ch in checks if ch.passed is False]
    if failed:
        reason = "; ".join(f"{ch.name}: {ch.detail}" for ch in failed)
        return CanaryVerdict(outcome="rollback", reason=reason, checks=checks, elapsed_s=elapsed)
    if final:
        reason = (
            f"window of {canary.window_s:g} s over, no criterion breached "
            f"(candidate {candidate.requests} requests, champion {champion.requests})"
        )
        return CanaryVerdict(outcome="promote", reason=reason, checks=checks, elapsed_s=elapsed)
    left = canary.window_s - elapsed
    reason = f"observing: {left:.0f} s of the window left"
    return CanaryVerdict(outcome="continue", reason=reason, checks=checks, elapsed_s=elapsed)


def _sizes(champion: VersionStats, candidate: VersionStats) -> dict[str, int]:
    return {"champion_samples": champion.requests, "candidate_samples": candidate.requests}


def _requests_check(
    c: CanaryCriteria, champion: VersionStats, candidate: VersionStats, final: bool
) -> CanaryCheck:
    fewest = min(champion.requests, candidate.requests)
    ok = fewest >= c.min_requests
    detail = (
        f"candidate answered {candidate.requests}, champion {champion.requests} requests; "
        f"each needs {c.min_requests}"
    )
    if not ok and final:
        detail += " by the end of the window: not enough traffic to promote on evidence"
    return CanaryCheck(
        name="min_requests",
        passed=True if ok else (False if final else None),
        value=float(fewest),
        threshold=float(c.min_requests),
        detail=detail,
        **_sizes(champion, candidate),
    )


def _waiting(
    name: str, threshold: float, champion: VersionStats, candidate: VersionStats, why: str
) -> CanaryCheck:
    return CanaryCheck(
        name=name, passed=None, threshold=threshold, detail=why, **_sizes(champion, candidate)
    )


def _error_check(
    c: CanaryCriteria,
    champion: VersionStats,
    candidate: VersionStats,
    final: bool,
    enough: bool,
    alpha: float,
) -> CanaryCheck:
    name, limit = "error_rate_delta", c.max_error_rate_delta
    if not enough:
        return _waiting(
            name, limit, champion, candidate, f"waiting for {c.min_requests} requests each"
        )
    delta = candidate.error_rate - champion.error_rate
    p = excess_p_value(
        candidate.errors, candidate.requests, champion.errors, champion.requests, limit
    )
    breached = delta > limit and (final or p < alpha)
    detail = (
        f"candidate {candidate.errors}/{candidate.requests} errors "
        f"({candidate.error_rate:.2%}), champion {champion.errors}/{champion.requests} "
        f"({champion.error_rate:.2%}): delta {delta:+.2%}, allowed {limit:.2%} "
        f"(excess test p = {p:.3g})"
    )
    return CanaryCheck(
        name=name,
        passed=_passed(breached, final),
        value=delta,
        threshold=limit,
        detail=detail,
        **_sizes(champion, candidate),
    )


def excess_p_value(k1: int, n1: int, k2: int, n2: int, margin: float) -> float:
    """One-sided p-value of H0: rate1 - rate2 <= margin (Wald z with add-one-half rates, so
    a side with no errors, or only errors, still has a variance)."""
    p1, p2 = (k1 + 0.5) / (n1 + 1), (k2 + 0.5) / (n2 + 1)
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return normal_sf((k1 / n1 - k2 / n2 - margin) / se)


def _latency_check(
    c: CanaryCriteria,
    champion: VersionStats,
    candidate: VersionStats,
    final: bool,
    enough: bool,
) -> CanaryCheck:
    name, limit = "p99_ratio", c.max_p99_ratio
    champ, cand = champion.p99_ms, candidate.p99_ms
    if not enough or champ is None or cand is None:
        return _waiting(
            name, limit, champion, candidate, f"waiting for {c.min_requests} requests each"
        )
    ratio = cand / max(champ, 1e-6)
    detail = (
        f"candidate p99 {cand:.1f} ms, champion {champ:.1f} ms: x{ratio:.2f}, allowed x{limit:g}"
    )
    if not final:
        return CanaryCheck(
            name=name,
            passed=None,
            value=ratio,
            threshold=limit,
            detail=f"{detail} (judged at the end of the window)",
            **_sizes(champion, candidate),
        )
    return CanaryCheck(
        name=name,
        passed=ratio <= limit,
        value=ratio,
        threshold=limit,
        detail=detail,
        **_sizes(champion, candidate),
    )


def score_drift(
    champion: VersionStats, candidate: VersionStats, alpha: float
) -> tuple[float, ColumnDrift]:
    """The Wasserstein-1 distance of the candidate's scores from the champion's, in score
    units, and the KS verdict: both the drift monitor's statistics."""
    ref, cur = champion.scores, candidate.scores
    w = detect_drift(ref, cur, DriftConfig(tests={"score": "wasserstein"})).features[0]
    ks = detect_drift(ref, cur, DriftConfig(alpha=alpha, tests={"score": "ks"})).features[0]
    # The monitor reports the distance over the reference std (floored): undo that scale.
    scale = max(ref.numeric("score").std, STD_FLOOR)
    return (w.statistic or 0.0) * scale, ks


def _score_check(
    c: CanaryCriteria,
    champion: VersionStats,
    candidate: VersionStats,
    final: bool,
    enough: bool,
    alpha: float,
) -> CanaryCheck:
    name, limit = "score_drift", c.max_score_drift
    n_champ, n_cand = champion.score_count, candidate.score_count
    sizes = {"champion_samples": n_champ, "candidate_samples": n_cand}
    if not enough:
        return CanaryCheck(
            name=name,
            passed=None,
            threshold=limit,
            detail=f"waiting for {c.min_requests} requests each",
            **sizes,
        )
    if n_champ == 0 or n_cand == 0:
        return CanaryCheck(
            name=name,
            passed=_passed(False, final),
            threshold=limit,
            detail="not applicable: the answers carry no results[].score to compare",
            **sizes,
        )
    distance, ks = score_drift(champion, candidate, alpha)
    p = ks.p_value if ks.p_value is not None else 1.0
    breached = distance >= limit and p < alpha
    detail = (
        f"scores moved by {distance:.4f} (Wasserstein-1, allowed < {limit:g}); KS p = {p:.3g} "
        f"(different when < {alpha:.3g}) over {n_cand} candidate and {n_champ} champion scores"
    )
    return CanaryCheck(
        name=name,
        passed=_passed(breached, final),
        value=distance,
        threshold=limit,
        detail=detail,
        **sizes,
    )


def _passed(breached: bool, final: bool) -> bool | None:
    """False on a breach; True once the window is over; None (observing) before that."""
    return False if breached else (True if final else None)
