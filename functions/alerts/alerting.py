"""Which alert an event makes, whether it goes out (deduplication, rate limit), and where.

- **Deduplication**: one alert per key (the transaction id of a `Fraud Suspected`, the device
  id of an `Anomaly Detected`) within `dedup_window_s`: the first event claims the key, later
  events with that key are dropped. A retry of the claiming event keeps its claim.
- **Rate limit**: at most `rate_limit` alerts per rate key (the card, the device) per fixed
  window of `rate_window_s` (aligned to the epoch: `[k * W, (k + 1) * W)`). An alert over the
  limit is suppressed: counted in the table, logged, and reported in the next delivered alert
  of that key as `suppressed_in_previous_window`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from aibackend.contracts import ContractError, Parsed
from aibackend.contracts.fraud import FraudSuspectedV1

from .settings import AlertSettings
from .state import AlertState

Kind = Literal["fraud", "anomaly"]


@dataclass(frozen=True)
class Alert:
    """What the sinks receive (`body()` is the webhook's JSON and the SNS message)."""

    alert_id: str
    kind: Kind
    detail_type: str
    source: str
    correlation_id: str
    #: Deduplication key: transaction id or device id.
    key: str
    #: Rate-limit key: card id or device id.
    rate_key: str
    detail: Mapping[str, Any]
    suppressed_in_previous_window: int = 0

    def body(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "kind": self.kind,
            "detail_type": self.detail_type,
            "source": self.source,
            "correlation_id": self.correlation_id,
            "key": self.key,
            "rate_key": self.rate_key,
            "suppressed_in_previous_window": self.suppressed_in_previous_window,
            "detail": dict(self.detail),
        }


def alert_of(parsed: Parsed[Any]) -> Alert:
    """The alert of a `Fraud Suspected` or `Anomaly Detected` event."""
    detail = parsed.detail
    common = {
        "alert_id": parsed.event_id,
        "detail_type": detail.detail_type,
        "source": parsed.source,
        "correlation_id": parsed.correlation_id,
        "detail": detail.model_dump(mode="json", exclude_none=True),
    }
    if isinstance(detail, FraudSuspectedV1):
        return Alert(kind="fraud", key=detail.transaction_id, rate_key=detail.card_id, **common)
    if detail.detail_type == "Anomaly Detected":
        device = getattr(detail, "device_id", None)
        if not isinstance(device, str) or not device:
            raise ContractError(
                f"event {parsed.event_id}: 'Anomaly Detected' v{detail.version} has no "
                "device_id; alerts deduplicate and rate-limit anomalies by device"
            )
        return Alert(kind="anomaly", key=device, rate_key=device, **common)
    raise ContractError(
        f"event {parsed.event_id}: alerts handle 'Fraud Suspected' and 'Anomaly Detected', "
        f"not {detail.detail_type!r}"
    )


class Sink(Protocol):
    @property
    def name(self) -> str:
        """`log`, `webhook` or `sns`."""
        ...

    def send(self, alert: Alert) -> None:
        """Deliver the alert or raise (the event is then retried, then dead-lettered)."""
        ...


@dataclass(frozen=True)
class Outcome:
    status: Literal["sent", "duplicate", "suppressed"]
    #: Suppressed alerts of this rate key in the current window, this one included.
    suppressed: int = 0
    sinks: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "suppressed": self.suppressed, "sinks": list(self.sinks)}


def _rate_slot(
    alert: Alert, state: AlertState, limits: AlertSettings, window: int, now: float
) -> bool:
    """Claim one of the window's `rate_limit` slots for this alert (its own on a retry)."""
    ttl = 2 * limits.rate_window_s  # the next window reads this one's suppressed count
    return any(
        state.claim(f"rate#{alert.kind}#{alert.rate_key}#{window}#{i}", alert.alert_id, now, ttl)
        for i in range(limits.rate_limit)
    )


def route(
    alert: Alert, state: AlertState, sinks: Sequence[Sink], limits: AlertSettings, now: float
) -> Outcome:
    """Deduplicate, rate-limit, then send to every sink (a sink that raises fails the event:
    the retry sends again to every sink, so sinks are at least once; receivers dedupe on
    `alert_id`)."""
    if not state.claim(
        f"dedup#{alert.kind}#{alert.key}", alert.alert_id, now, limits.dedup_window_s
    ):
        return Outcome("duplicate")
    window = int(now // limits.rate_window_s)
    if not _rate_slot(alert, state, limits, window, now):
        n = state.increment(
            f"suppressed#{alert.kind}#{alert.rate_key}#{window}", now, 2 * limits.rate_window_s
        )
        return Outcome("suppressed", suppressed=n)
    before = state.count(f"suppressed#{alert.kind}#{alert.rate_key}#{window - 1}", now)
    out = replace(alert, suppressed_in_previous_window=before)
    for sink in sinks:
        sink.send(out)
    return Outcome("sent", sinks=tuple(s.name for s in sinks))
