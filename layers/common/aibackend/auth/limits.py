"""Usage plans enforced by the local gateway, the way API Gateway enforces them on AWS.

Rate: a token bucket per key (`burst` tokens, refilled at `rate_per_s`). Quota: requests per
UTC day. Both answer with how long to wait (`Retry-After`). Counts live in memory and are
added to the key store at most once a second, so a daily quota survives a restart.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from aibackend.auth.keys import ApiKey
from aibackend.auth.plans import Plan


class UsageStore(Protocol):
    def add_usage(self, day: str, counts: Mapping[str, int]) -> None: ...
    def usage(self, day: str) -> dict[str, int]: ...


@dataclass(frozen=True)
class Limited:
    """A request over its key's plan."""

    reason: str  # "rate" or "quota"
    retry_after_s: int
    detail: str


@dataclass
class _Bucket:
    tokens: float
    at: float


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _seconds_to_midnight(ts: float) -> int:
    now = datetime.fromtimestamp(ts, UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((midnight - now).total_seconds()))


class UsageLimiter:
    def __init__(
        self,
        plans: Mapping[str, Plan],
        store: UsageStore | None = None,
        *,
        clock: Callable[[], float] = time.time,
        flush_every_s: float = 1.0,
    ) -> None:
        self.plans = plans
        self.store = store
        self.clock = clock
        self.flush_every_s = flush_every_s
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._day = _day(clock())
        self._used: dict[str, int] = dict(store.usage(self._day)) if store else {}
        self._pending: dict[str, int] = {}
        self._flushed_at = clock()

    def check(self, key: ApiKey) -> Limited | None:
        """Count one request for `key`, or say why it is over its plan (and count nothing)."""
        plan = self.plans.get(key.plan)
        if plan is None:  # a key whose plan was removed from plans.toml: refuse, loudly
            return Limited(
                "plan",
                3600,
                f"key {key.key_id} is on plan {key.plan!r}, which plans.toml no longer declares",
            )
        now = self.clock()
        with self._lock:
            day = _day(now)
            if day != self._day:
                self._flush(now)
                self._day, self._used = day, {}
            used = self._used.get(key.key_id, 0)
            if plan.quota_per_day is not None and used >= plan.quota_per_day:
                return Limited(
                    "quota",
                    _seconds_to_midnight(now),
                    f"key {key.key_id} used its plan {plan.name!r} quota of "
                    f"{plan.quota_per_day:,} requests today (UTC); it resets at midnight UTC",
                )
            b = self._buckets.get(key.key_id)
            if b is None:
                b = self._buckets[key.key_id] = _Bucket(float(plan.burst), now)
            b.tokens = min(float(plan.burst), b.tokens + (now - b.at) * plan.rate_per_s)
            b.at = now
            if b.tokens < 1.0:
                wait = (1.0 - b.tokens) / plan.rate_per_s
                return Limited(
                    "rate",
                    max(1, math.ceil(wait)),
                    f"key {key.key_id} is over its plan {plan.name!r} rate of "
                    f"{plan.rate_per_s:g} requests/s (burst {plan.burst})",
                )
            b.tokens -= 1.0
            self._used[key.key_id] = used + 1
            self._pending[key.key_id] = self._pending.get(key.key_id, 0) + 1
            if now - self._flushed_at >= self.flush_every_s:
                self._flush(now)
        return None

    def used_today(self, key_id: str) -> int:
        with self._lock:
            return self._used.get(key_id, 0)

    def flush(self) -> None:
        with self._lock:
            self._flush(self.clock())

    def _flush(self, now: float) -> None:
        if self.store is not None and self._pending:
            self.store.add_usage(self._day, self._pending)
        self._pending = {}
        self._flushed_at = now
