"""Usage plans as the local gateway enforces them: a token bucket per key and a daily quota."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from aibackend.auth.keys import LocalKeyStore
from aibackend.auth.limits import UsageLimiter
from aibackend.auth.plans import DEFAULT_PLANS, Plan

PLANS = {
    "tiny": Plan(name="tiny", rate_per_s=2, burst=3, quota_per_day=5),
    "open": Plan(name="open", rate_per_s=1000, burst=1000),
}
NOON = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _store(tmp_path: Path) -> LocalKeyStore:
    return LocalKeyStore(tmp_path / "keys.db", {**DEFAULT_PLANS, **PLANS})


def test_a_burst_passes_then_the_rate_answers_with_how_long_to_wait(tmp_path: Path) -> None:
    # GIVEN a key on a plan of 2 requests/s with a burst of 3
    store = _store(tmp_path)
    key, _ = store.create("k", "tiny")
    clock = Clock(NOON)
    limiter = UsageLimiter(PLANS, store, clock=clock)
    # WHEN 4 requests arrive at once
    verdicts = [limiter.check(key) for _ in range(4)]
    # THEN the burst of 3 passes and the 4th is limited by rate, retry after 1 s
    assert verdicts[:3] == [None, None, None]
    limited = verdicts[3]
    assert limited is not None and (limited.reason, limited.retry_after_s) == ("rate", 1)
    assert "rate of 2 requests/s (burst 3)" in limited.detail
    # AND half a second later one token has refilled
    clock.t += 0.5
    assert limiter.check(key) is None


def test_the_daily_quota_holds_until_midnight_utc_and_survives_a_restart(tmp_path: Path) -> None:
    # GIVEN a key on a plan of 5 requests a day, used 5 times (slowly: never rate-limited)
    store = _store(tmp_path)
    key, _ = store.create("k", "tiny")
    clock = Clock(NOON)
    limiter = UsageLimiter(PLANS, store, clock=clock)
    for _ in range(5):
        assert limiter.check(key) is None
        clock.t += 2
    # WHEN a 6th arrives
    limited = limiter.check(key)
    # THEN it is over quota, to be retried at midnight UTC (12 h minus the 10 s used)
    assert limited is not None and limited.reason == "quota"
    assert limited.retry_after_s == 12 * 3600 - 10
    assert "quota of 5 requests today (UTC)" in limited.detail
    # AND a new limiter on the same store (a restarted `aib dev`) still refuses it
    limiter.flush()
    again = UsageLimiter(PLANS, store, clock=clock)
    assert again.used_today(key.key_id) == 5
    refused = again.check(key)
    assert refused is not None and refused.reason == "quota"
    # AND the next UTC day starts from zero
    clock.t += 12 * 3600
    assert again.check(key) is None


def test_limits_are_per_key(tmp_path: Path) -> None:
    store = _store(tmp_path)
    a, _ = store.create("a", "tiny")
    b, _ = store.create("b", "tiny")
    limiter = UsageLimiter(PLANS, store, clock=Clock(NOON))
    for _ in range(3):
        limiter.check(a)
    assert limiter.check(a) is not None
    assert limiter.check(b) is None


def test_a_key_on_a_plan_no_longer_declared_is_refused_with_the_reason(tmp_path: Path) -> None:
    store = _store(tmp_path)
    key, _ = store.create("k", "free")
    limited = UsageLimiter(PLANS, store, clock=Clock(NOON)).check(key)
    assert limited is not None
    assert "plan 'free', which plans.toml no longer declares" in limited.detail


def test_usage_is_written_at_most_once_a_second(tmp_path: Path) -> None:
    store = _store(tmp_path)
    key, _ = store.create("k", "open")
    clock = Clock(NOON)
    limiter = UsageLimiter(PLANS, store, clock=clock)
    for _ in range(10):
        limiter.check(key)
    assert store.usage("2026-11-27") == {}
    clock.t += 1.5
    limiter.check(key)
    assert store.usage("2026-11-27") == {key.key_id: 11}
