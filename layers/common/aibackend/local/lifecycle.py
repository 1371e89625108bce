"""Object expiration under `aib dev`: what an S3 lifecycle rule does on AWS.

The same rules CDK puts on the buckets (`infra`: `expiration_rules`): objects under a prefix
expire a number of days after they were written. S3 applies its rules about once a day; this
sweep runs when the runtime starts and then hourly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aibackend.capture import BUCKET as CAPTURE_BUCKET
from aibackend.capture import PREFIX as CAPTURE_PREFIX
from aibackend.catalog import Catalog
from aibackend.ports import ObjectStore

log = logging.getLogger("aib.runtime")
SWEEP_EVERY_S = 3600.0


@dataclass(frozen=True)
class ExpirationRule:
    bucket: str
    prefix: str
    days: int


def expiration_rules(catalog: Catalog) -> list[ExpirationRule]:
    """Every expiration the declarations ask for (today: captured inferences, per model)."""
    return [
        ExpirationRule(CAPTURE_BUCKET, f"{CAPTURE_PREFIX}{model}/", s.retention_days)
        for model, s in sorted(catalog.capture.items())
    ]


def expire(store: ObjectStore, rule: ExpirationRule, now: datetime | None = None) -> int:
    """Delete the rule's objects older than its days; returns how many."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=rule.days)
    old = [o.key for o in store.list(rule.prefix) if o.last_modified < cutoff]
    for key in old:
        store.delete(key)
    return len(old)


class Sweeper:
    """Applies the rules now and every `every_s` seconds until stopped."""

    def __init__(
        self,
        rules: Sequence[ExpirationRule],
        store_for: Callable[[str], ObjectStore],
        every_s: float = SWEEP_EVERY_S,
    ) -> None:
        self.rules = list(rules)
        self.store_for = store_for
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="aib-lifecycle", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def sweep(self) -> int:
        total = 0
        for rule in self.rules:
            try:
                n = expire(self.store_for(rule.bucket), rule)
            except Exception:
                log.exception("expiring %s/%s failed", rule.bucket, rule.prefix)
                continue
            if n:
                log.info(
                    "expired %d objects under %s/%s (%d days)",
                    n,
                    rule.bucket,
                    rule.prefix,
                    rule.days,
                )
            total += n
        return total

    def _loop(self) -> None:
        while True:
            self.sweep()
            if self._stop.wait(self.every_s):
                return
