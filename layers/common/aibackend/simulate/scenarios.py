"""The simulated streams. Each scenario is an endless iterator of `SimEvent`s, deterministic
for a seed (ids and times aside: transactions are stamped with the time they are made).

- `payments`: the fraud generator's transactions (`aibackend.fraud.generator`) as
  `Transaction Created`, plus card-testing bursts (6-10 small online payments on one card in a
  row) about once every 1,500 events. Every one must produce a `Transaction Scored`.
- `iot`: `Sensor Reading`s of a fleet (`aibackend.iot.devices`, 50 devices per type), each
  device reporting every 10 s of *device* time (the stream compresses time: at 500 events/s
  150 devices report 10 s of readings in 0.3 s of wall time); about 1 in 500 readings starts
  an anomaly (spike, stuck value or drift) lasting 3 to 10 readings.
- `shop`: `Product Viewed` sessions over the recommendation catalog (the trained model's
  generated world: items drawn from a user's taste clusters by popularity), 1 to ~25 views a
  session, 200 sessions open at a time.
- `mixed`: 40 % payments, 40 % iot, 20 % shop, interleaved.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np

from aibackend.ports import PutEvent

Scenario = Literal["payments", "iot", "shop", "mixed"]
SCENARIOS: tuple[Scenario, ...] = ("payments", "iot", "shop", "mixed")

#: The recommendation training's data (`training.recommendations`: 200k rows, seed 7).
CATALOG_ROWS, CATALOG_SEED = 200_000, 7
IOT_INTERVAL_S = 10.0


@dataclass(frozen=True)
class SimEvent:
    event: PutEvent
    #: The detail-type every such event must cause (`caused_by` = its id); None: none or only
    #: sometimes (an anomaly), so only its deliveries are checked.
    result: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def payments(seed: int, run: str, clock: Callable[[], datetime] = _now) -> Iterator[SimEvent]:
    from aibackend.fraud.generator import generate_transactions, to_records

    rng = np.random.default_rng(seed)
    n = 0
    for chunk in range(1_000_000):
        records = to_records(generate_transactions(5_000, seed=seed * 7919 + chunk))
        for record in records:
            record["card_id"] = _card_day(record)
            burst = _card_testing(rng, record) if rng.random() < 1 / 1_500 else [record]
            for txn in burst:
                yield SimEvent(
                    _transaction(txn, f"sim-{run}-{n:08d}", clock()), "Transaction Scored"
                )
                n += 1


def _card_day(record: dict[str, Any]) -> str:
    """One simulated card per generated card and day.

    The generator spreads a card's transactions over a month; the stream puts that month in
    seconds. The online features count a card's transactions in the last hour and day of
    *stamped* time, so a whole month would land in one hour: as the same card, most cards
    looked like card testing and about 11% of transactions were flagged (the generated data
    has 1.1% fraud). Per card and day, a card's counts are at most its day's, which is what
    the training data's `txn_count_24h` holds.
    """
    return f"{record['card_id']}-{str(record['timestamp'])[:10]}"


def _card_testing(rng: np.random.Generator, record: dict[str, Any]) -> list[dict[str, Any]]:
    size = int(rng.integers(6, 11))
    return [
        {
            **record,
            "amount": round(float(rng.uniform(0.5, 5.0)), 2),
            "merchant_category": "online_services",
            "card_present": False,
        }
        for _ in range(size)
    ]


def _transaction(record: dict[str, Any], txn_id: str, at: datetime) -> PutEvent:
    detail = {
        **{k: v for k, v in record.items() if k not in ("txn_count_1h", "txn_count_24h")},
        "schema_version": "1",
        "transaction_id": txn_id,
        "timestamp": at.isoformat(),
        "avg_amount_30d": None,
    }
    detail = {k: v for k, v in detail.items() if v is not None}
    return PutEvent(source="aib.payments", detail_type="Transaction Created", detail=detail)


def iot(
    seed: int, run: str, clock: Callable[[], datetime] = _now, devices_per_type: int = 50
) -> Iterator[SimEvent]:
    from aibackend.iot.devices import ANOMALIES, fleet

    rng = np.random.default_rng(seed)
    devices = fleet(devices_per_type, rng)
    start = clock()
    for step in range(10**12):
        t_s = IOT_INTERVAL_S * step
        for i in rng.permutation(len(devices)).tolist():
            device = devices[i]
            if device.anomaly is None and rng.random() < 1 / 500:
                kind = ANOMALIES[int(rng.integers(len(ANOMALIES)))]
                device.start_anomaly(kind, t_s, int(rng.integers(3, 11)), device.normal(t_s, rng))
            detail = {
                "schema_version": "1",
                "device_id": f"{run}-{device.id}",
                "device_type": device.type.name,
                "value": round(device.read(t_s, rng), 4),
                "unit": device.type.unit,
                "reading_time": (start + timedelta(seconds=t_s)).isoformat(),
            }
            yield SimEvent(PutEvent(source="aib.iot", detail_type="Sensor Reading", detail=detail))


def pick(cdf: Sequence[float], u: float) -> int:
    """The index a uniform `u` in [0, 1) draws from cumulative weights `cdf` (inverse CDF):
    index i with probability (cdf[i] - cdf[i - 1]) / cdf[-1]; a weight of 0 is never drawn."""
    return min(bisect.bisect_right(cdf, u * cdf[-1]), len(cdf) - 1)


def shop(seed: int, run: str, clock: Callable[[], datetime] = _now) -> Iterator[SimEvent]:
    from aibackend.recommend.generator import generate_interactions, item_id, user_id

    world = generate_interactions(CATALOG_ROWS, seed=CATALOG_SEED).world
    rng = np.random.default_rng(seed)
    clusters = world.taste.shape[1]
    by_cluster = [np.flatnonzero(world.item_cluster == c).tolist() for c in range(clusters)]
    # Cumulative weights, built once: `rng.choice(p=...)` rebuilt them on every call (36 us a
    # draw against 2 us for `pick`, two draws a view) and draws the same indexes.
    tastes = np.cumsum(world.taste, axis=1).tolist()
    items = [np.cumsum(world.item_weight[ix]).tolist() for ix in by_cluster]

    def draw(cdf: list[float]) -> int:
        return pick(cdf, float(rng.random()))

    open_sessions: list[tuple[str, int, int]] = []  # (session id, user, views left)
    n_sessions = 0
    while True:
        if len(open_sessions) < 200:
            user = int(rng.integers(world.taste.shape[0]))
            open_sessions.append((f"s-{run}-{n_sessions}", user, int(rng.geometric(1 / 8))))
            n_sessions += 1
            continue
        k = int(rng.integers(len(open_sessions)))
        session, user, left = open_sessions[k]
        cluster = draw(tastes[user])
        item = by_cluster[cluster][draw(items[cluster])]
        if left <= 1:
            open_sessions.pop(k)
        else:
            open_sessions[k] = (session, user, left - 1)
        detail = {
            "schema_version": "1",
            "session_id": session,
            "user_id": user_id(user),
            "item_id": item_id(item),
            "viewed_at": clock().isoformat(),
        }
        yield SimEvent(PutEvent(source="aib.shop", detail_type="Product Viewed", detail=detail))


MIX: dict[Scenario, float] = {"payments": 0.4, "iot": 0.4, "shop": 0.2}


def stream(scenario: Scenario, seed: int, run: str) -> Iterator[SimEvent]:
    """The scenario's events, endlessly.

    Each stream's world (the payments' first 5,000 transactions, the fleet, the shop's
    catalog: ~1 s for the catalog) is built here, before the first event is asked for, so a
    paced run's clock starts with everything ready. Built lazily, the shop's catalog stalled
    the first second of every `mixed` run (55-95 events put in it at 200/s).
    """
    makers: dict[Scenario, Callable[[int, str], Iterator[SimEvent]]] = {
        "payments": payments,
        "iot": iot,
        "shop": shop,
    }
    if scenario != "mixed":
        return _started(makers[scenario](seed, run))
    names = list(MIX)
    streams = [_started(makers[name](seed + i + 1, run)) for i, name in enumerate(names)]
    return _mixed(seed, [MIX[name] for name in names], streams)


def _started(events: Iterator[SimEvent]) -> Iterator[SimEvent]:
    """`events` with its generator run up to its first event (which is kept)."""
    first = next(events)
    return itertools.chain([first], events)


def _mixed(seed: int, shares: list[float], streams: list[Iterator[SimEvent]]) -> Iterator[SimEvent]:
    rng = np.random.default_rng(seed)
    p = np.array(shares)
    while True:
        for k in rng.choice(len(streams), size=1_000, p=p).tolist():
            yield next(streams[k])
