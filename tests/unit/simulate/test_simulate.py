"""The simulator: token-bucket pacing, the scenarios' events, and how a run's outcome is read
from the local bus's records (latency, lost events by cause)."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aibackend.adapters.local_bus import LocalEventBus, Target
from aibackend.contracts import parse
from aibackend.ports import PutEvent
from aibackend.simulate.pacer import TokenBucket
from aibackend.simulate.run import BusRecords, Put, outcome, put_paced
from aibackend.simulate.scenarios import SimEvent, iot, payments, shop, stream


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_token_bucket_holds_the_rate_without_drift_when_each_put_takes_time() -> None:
    # GIVEN a bucket at 100 tokens/s and puts that each take 4 ms of their own
    clock = FakeClock()
    bucket = TokenBucket(100, burst=10, clock=clock, sleep=clock.sleep)
    # WHEN 1,000 single tokens are taken, each followed by the put's own 4 ms
    for _ in range(1_000):
        bucket.take(1)
        clock.now += 0.004
    # THEN 1,000 events took 10 s (+ the last put), not 1,000 x (10 ms + 4 ms) = 14 s
    assert clock.now == pytest.approx(10.0, abs=0.02)


def test_token_bucket_refuses_takes_larger_than_its_burst() -> None:
    # GIVEN a bucket with a burst of 10 / WHEN 11 tokens are asked for / THEN it says why
    with pytest.raises(ValueError, match="burst=10"):
        TokenBucket(50, burst=10).take(11)


def event_of(sim: SimEvent, n: int) -> dict[str, Any]:
    e = sim.event
    return {"id": f"e-{n}", "source": e.source, "detail-type": e.detail_type, "detail": e.detail}


@pytest.mark.parametrize("scenario", ["payments", "iot", "shop", "mixed"])
def test_every_scenario_event_passes_its_contract(scenario: str) -> None:
    # GIVEN a scenario's first 2,000 events
    events = list(itertools.islice(stream(scenario, seed=3, run="t"), 2_000))  # type: ignore[arg-type]
    # WHEN each is parsed as the bus would deliver it / THEN each passes its contract
    for n, sim in enumerate(events):
        parse(event_of(sim, n))


def test_the_mixed_scenario_interleaves_the_three_streams_in_proportion() -> None:
    events = list(itertools.islice(stream("mixed", seed=1, run="t"), 3_000))
    kinds = [s.event.detail_type for s in events]
    share = {k: kinds.count(k) / len(kinds) for k in set(kinds)}
    assert share["Transaction Created"] == pytest.approx(0.4, abs=0.05)
    assert share["Sensor Reading"] == pytest.approx(0.4, abs=0.05)
    assert share["Product Viewed"] == pytest.approx(0.2, abs=0.05)


def test_a_mixed_stream_builds_every_world_before_its_first_event_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the three world builders, recorded (the shop's catalog takes ~1 s)
    import aibackend.fraud.generator as transactions
    import aibackend.iot.devices as devices
    import aibackend.recommend.generator as catalog

    built: list[str] = []
    for module, name in (
        (transactions, "generate_transactions"),
        (devices, "fleet"),
        (catalog, "generate_interactions"),
    ):
        real = getattr(module, name)

        def record(*a: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            built.append(_name)
            return _real(*a, **kw)

        monkeypatch.setattr(module, name, record)
    # WHEN the stream is made, before a paced run's clock starts
    events = stream("mixed", seed=2, run="t")
    # THEN every world is built already, so no event of the run waits for one
    assert set(built) == {"generate_transactions", "fleet", "generate_interactions"}
    # AND none of a stream's events is skipped to get there: the first event of the mix is
    # the first its own scenario makes (times aside)
    first = next(events)
    own = {"Transaction Created": payments, "Sensor Reading": iot, "Product Viewed": shop}
    offset = {"Transaction Created": 1, "Sensor Reading": 2, "Product Viewed": 3}
    kind = first.event.detail_type
    alone = next(own[kind](2 + offset[kind], "t"))
    untimed = {"timestamp": None, "viewed_at": None, "reading_time": None}
    assert first.event.detail | untimed == alone.event.detail | untimed


def test_payments_contain_card_testing_bursts_and_require_a_score() -> None:
    # GIVEN 20,000 payment events
    events = list(itertools.islice(payments(seed=5, run="t"), 20_000))
    # THEN runs of 6+ consecutive small (<= 5.00) online payments of one card exist (bursts)
    flags = [
        (d["card_id"], d["amount"] <= 5.0 and not d["card_present"])
        for d in (s.event.detail for s in events)
    ]
    runs = [len(list(g)) for (_, burst), g in itertools.groupby(flags) if burst]
    assert max(runs) >= 6
    assert {s.result for s in events} == {"Transaction Scored"}
    assert len({s.event.detail["transaction_id"] for s in events}) == len(events)


def test_a_simulated_card_carries_one_day_of_transactions_not_a_month() -> None:
    # GIVEN 20,000 payment events (the generator gives a card up to ~66 transactions a month
    # in each 5,000; the stream puts them seconds apart)
    events = [s.event.detail for s in itertools.islice(payments(seed=5, run="t"), 20_000)]
    # WHEN the transactions outside card-testing bursts are counted per card
    per_card = Counter(
        d["card_id"] for d in events if not (d["amount"] <= 5.0 and not d["card_present"])
    )
    # THEN no card has more than a busy day's worth: its velocity features (transactions in
    # the last hour and day of stamped time) stay those of the training data, instead of a
    # month landing in one hour and most cards looking like card testing
    assert max(per_card.values()) <= 10
    assert len(per_card) > 10_000


def test_iot_readings_advance_each_devices_clock_and_include_anomalies() -> None:
    readings = [
        s.event.detail for s in itertools.islice(iot(seed=2, run="t", devices_per_type=5), 15 * 400)
    ]
    by_device: dict[str, list[str]] = {}
    for r in readings:
        by_device.setdefault(r["device_id"], []).append(r["reading_time"])
    assert len(by_device) == 15
    assert all(
        times == sorted(times) and len(set(times)) == len(times) for times in by_device.values()
    )
    # a stuck sensor: a device repeating its exact value (noise never does)
    values: dict[str, list[float]] = {}
    for r in readings:
        values.setdefault(r["device_id"], []).append(r["value"])
    assert any(a == b for v in values.values() for a, b in itertools.pairwise(v))


def test_identical_seeds_give_identical_streams() -> None:
    a = [s.event.detail["value"] for s in itertools.islice(iot(seed=9, run="t"), 500)]
    b = [s.event.detail["value"] for s in itertools.islice(iot(seed=9, run="t"), 500)]
    assert a == b


class Consumer:
    """Delivers by publishing `Result` for `ok` ids, raising for `bad` ones."""

    def __init__(self, bus: list[LocalEventBus]) -> None:
        self.bus = bus

    def __call__(self, target: Target, event: dict[str, Any]) -> None:
        if event["detail"].get("fail"):
            raise RuntimeError("consumer broke")
        if event["detail"].get("answer"):
            self.bus[0].put_events(
                [PutEvent(source="t", detail_type="Result", detail={"caused_by": event["id"]})]
            )


def test_outcome_classifies_every_put_event_as_processed_or_lost_with_the_reason(
    tmp_path: Path,
) -> None:
    # GIVEN a bus with one consumer of `Work` that answers, stays silent or fails
    holder: list[LocalEventBus] = []
    bus = LocalEventBus(tmp_path / "events.db", deliver=Consumer(holder), retry_delays_s=(0,))
    holder.append(bus)
    target = Target(kind="function", name="worker", max_attempts=0)
    bus.put_rule("work", bus="aib", pattern={"detail-type": ["Work"]}, targets=[target])
    records = BusRecords(tmp_path / "events.db")
    since = records.last_seq()
    kinds = {"answers": {"answer": True}, "silent": {}, "fails": {"fail": True}}
    details = [*kinds.values(), {}]
    entries = [PutEvent(source="t", detail_type="Work", detail=d) for d in details[:3]]
    entries.append(PutEvent(source="t", detail_type="Nobody", detail={}))
    ids = bus.put_events(entries).event_ids
    puts = [Put(str(i), e.detail_type, "Result") for i, e in zip(ids, entries, strict=True)]
    records.track(puts)
    # WHEN nothing ran yet / THEN three are pending and one matched no rule
    pending = outcome(puts, 0, records, since)
    assert (pending.lost.pending, pending.lost.unrouted) == (3, 1)
    # WHEN the bus delivers
    while bus.run_due(max_items=10):
        pass
    # THEN: answered -> a latency; silent -> no result; failing -> failed; `Nobody` -> unrouted
    done = outcome(puts, 2, records, since)
    assert (done.lost.no_result, done.lost.failed, done.lost.unrouted, done.lost.refused) == (
        1,
        1,
        1,
        2,
    )
    assert len(done.to_result["Result"]) == 1 and done.to_result["Result"][0] >= 0
    # AND only the answered one is processed, no sooner than its result (a delivery into a
    # queue ends before the consumer has run: the result says when it did)
    assert len(done.to_processed) == 1
    assert done.to_processed[0] >= done.to_result["Result"][0]
    assert done.results["Result"] == 1
    records.close()
    bus.close()


class SlowBus:
    """Accepts every entry; each put takes 2 ms of (fake) time."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.batches: list[int] = []

    def put_events(self, entries: list[PutEvent]) -> Any:
        from aibackend.ports import PutEventsResult

        self.clock.now += 0.002
        self.batches.append(len(entries))
        return PutEventsResult(
            event_ids=tuple(f"id{len(self.batches)}-{i}" for i in range(len(entries)))
        )


def test_put_paced_puts_rate_times_duration_events_in_batches_of_ten() -> None:
    # GIVEN a fake clock that the bucket sleeps on
    clock = FakeClock()
    bus = SlowBus(clock)
    events = stream("iot", seed=0, run="t")
    # WHEN 3 s are put at 1,000/s
    puts, refused, took = put_paced(bus, events, 1_000, 3.0, clock=clock, sleep=clock.sleep)
    # THEN about 3,000 events went, in PutEvents-sized batches
    assert 2_990 <= len(puts) <= 3_110 and refused == 0
    assert set(bus.batches) == {10}
    assert took == pytest.approx(3.0, abs=0.05)


@pytest.mark.parametrize(
    ("cdf", "draws"),
    [
        # weights 0.2, 0.3, 0.5: each index owns its slice of [0, 1)
        ([0.2, 0.5, 1.0], {0.0: 0, 0.1999: 0, 0.2: 1, 0.4999: 1, 0.5: 2, 0.9999: 2}),
        # unnormalized weights 0, 2, 0, 2: the empty ones are never drawn
        ([0.0, 2.0, 2.0, 4.0], {0.0: 1, 0.4999: 1, 0.5: 3, 0.9999: 3}),
    ],
)
def test_pick_draws_each_index_with_its_weights_share(
    cdf: list[float], draws: dict[float, int]
) -> None:
    from aibackend.simulate.scenarios import pick

    assert {u: pick(cdf, u) for u in draws} == draws


def test_shop_views_follow_the_catalogs_item_weights() -> None:
    # GIVEN 20,000 views of the shop stream
    from aibackend.recommend.generator import generate_interactions, item_id
    from aibackend.simulate.scenarios import CATALOG_ROWS, CATALOG_SEED

    world = generate_interactions(CATALOG_ROWS, seed=CATALOG_SEED).world
    views = Counter(
        s.event.detail["item_id"] for s in itertools.islice(shop(seed=9, run="t"), 20_000)
    )
    # THEN the items the catalog weighs most are viewed most: the 10% heaviest items draw a
    # larger share of views than the 10% lightest, and every view is of a catalog item
    order = np.argsort(world.item_weight)
    tenth = len(order) // 10
    heavy = sum(views[item_id(int(i))] for i in order[-tenth:])
    light = sum(views[item_id(int(i))] for i in order[:tenth])
    assert heavy > 3 * light
    assert set(views) <= {item_id(i) for i in range(len(world.item_weight))}


def test_pick_draws_what_numpys_weighted_choice_draws_from_the_same_generator() -> None:
    # GIVEN random weights and two generators of one seed
    from aibackend.simulate.scenarios import pick

    weights = np.random.default_rng(0).random(50) ** 3
    cdf = np.cumsum(weights).tolist()
    ours, numpys = np.random.default_rng(7), np.random.default_rng(7)
    # THEN pick on one uniform a draw gives the indexes rng.choice(p=...) gives: the shop
    # stream is the one it was before pick replaced that (slower) call
    drawn = [pick(cdf, float(ours.random())) for _ in range(5_000)]
    expected = [int(numpys.choice(50, p=weights / weights.sum())) for _ in range(5_000)]
    assert drawn == expected


def test_an_event_delivered_into_a_queue_is_processed_when_its_consumer_deleted_it(
    tmp_path: Path,
) -> None:
    from aibackend.adapters.local_queue import SqliteQueueService
    from aibackend.ports import QueueConfig

    # GIVEN a bus whose rule for `Work` fills a consumer's queue (`[[queues.events]]`)
    now = [1000.0]
    queues = SqliteQueueService(tmp_path / "queues.db", clock=lambda: now[0])
    queue = queues.ensure(QueueConfig(name="work-in"))
    bus = LocalEventBus(
        tmp_path / "events.db", deliver=Consumer([]), queues=queues, clock=lambda: now[0]
    )
    target = Target(kind="queue", name="work-in", max_attempts=0)
    bus.put_rule("work", bus="aib", pattern={"detail-type": ["Work"]}, targets=[target])
    records = BusRecords(tmp_path / "events.db")
    since = records.last_seq()
    [event_id] = bus.put_events([PutEvent(source="t", detail_type="Work", detail={})]).event_ids
    puts = [Put(str(event_id), "Work", None)]
    records.track(puts)
    # WHEN the bus has put it into the queue THEN it is not processed yet: pending
    while bus.run_due(max_items=10):
        pass
    assert outcome(puts, 0, records, since).lost.pending == 1
    # WHEN the consumer takes it 2.5 s later and deletes it
    now[0] += 2.5
    [message] = queue.receive(10)
    queue.delete(message.receipt_handle)
    # THEN it is processed, at the deletion: 2.5 s after the put
    done = outcome(puts, 0, records, since)
    assert done.lost.total == 0
    assert done.to_processed == [pytest.approx(2.5)]
    records.close()
    bus.close()
    queues.close()
