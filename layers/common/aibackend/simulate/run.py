"""Put a scenario's events on a local bus at a steady rate, wait for the consumers, report.

Everything is read from the local bus's own records (`aibackend.adapters.local_bus`): the
archive (`bus_archive`: every event with the bus's receive time, the results included) and
the deliveries (`bus_deliveries`: one row per event and target, `delivered`/`failed`/
`pending`, with the time it finished). So the simulator works the same against a separate
`aib dev` process (sharing `<state>/events.db`) and an in-process runtime.

- **Latency to result**: the result event's receive time minus its cause's (matched by the
  result's `caused_by`), for events with a required result (`Transaction Scored`).
- **Latency to processed**: the last delivery's finish time (or the required result's receive
  time, if later) minus the event's receive time, for every event: what a consumer without a
  result event (a profile update) costs. A delivery into a queue (a rule filling a consumer's
  queue, `[[queues.events]]`) finishes when the consumer has deleted the message (the local
  queues' `queue_done`), not when the bus put it there.
- **Lost**: refused by the bus, matched no rule (`unrouted`: is the consumer deployed?), a
  delivery `failed` (its failure queue has it) or still `pending` when the wait ended, or
  delivered without its required result (`no_result`).
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from aibackend.adapters.local import connect, connection
from aibackend.ports import PutEvent, PutEventsResult
from aibackend.simulate.pacer import TokenBucket
from aibackend.simulate.scenarios import Scenario, SimEvent, stream


class Bus(Protocol):
    def put_events(self, entries: list[PutEvent]) -> PutEventsResult: ...


@dataclass(frozen=True)
class Put:
    event_id: str
    detail_type: str
    result: str | None


@dataclass(frozen=True)
class Progress:
    elapsed_s: float
    put: int
    backlog: int

    def line(self, rate: float) -> str:
        achieved = self.put / self.elapsed_s if self.elapsed_s else 0.0
        return (
            f"{self.elapsed_s:6.1f}s  put {self.put:>8}  {achieved:8.1f}/s (target {rate:g})  "
            f"backlog {self.backlog}"
        )


@dataclass(frozen=True)
class Latency:
    n: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Latency | None:
        if not seconds:
            return None
        ms = np.asarray(seconds) * 1000
        p50, p95, p99 = (round(float(v), 1) for v in np.percentile(ms, [50, 95, 99]))
        return cls(len(seconds), p50, p95, p99, round(float(ms.max()), 1))


@dataclass
class Lost:
    refused: int = 0
    unrouted: int = 0
    failed: int = 0
    pending: int = 0
    no_result: int = 0

    @property
    def total(self) -> int:
        return self.refused + self.unrouted + self.failed + self.pending + self.no_result


@dataclass
class Report:
    scenario: str
    target_rate_per_s: float
    duration_s: float
    put: int
    put_rate_per_s: float
    by_type: dict[str, int]
    to_result: dict[str, Latency | None]
    to_processed: Latency | None
    lost: Lost
    #: Wall time from the last put until every event was processed (or the wait ended).
    drain_s: float
    results: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["lost"]["total"] = self.lost.total
        return out

    def text(self) -> str:
        lines = [
            f"{self.scenario}: {self.put} events in {self.duration_s:.1f}s "
            f"({self.put_rate_per_s:.1f}/s, target {self.target_rate_per_s:g}/s); "
            f"drained {self.drain_s:.1f}s after the last put",
            "  events: " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_type.items())),
            "  results: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.results.items())) or "none"),
        ]
        for name, lat in [*self.to_result.items(), ("processed", self.to_processed)]:
            label = f"put -> {name}"
            if lat is None:
                lines.append(f"  {label}: no samples")
            else:
                lines.append(
                    f"  {label}: p50 {lat.p50_ms} ms  p95 {lat.p95_ms} ms  p99 {lat.p99_ms} ms  "
                    f"max {lat.max_ms} ms  (n={lat.n})"
                )
        lost = self.lost
        lines.append(
            f"  lost: {lost.total} (refused {lost.refused}, unrouted {lost.unrouted}, failed "
            f"{lost.failed}, pending {lost.pending}, no result {lost.no_result})"
        )
        if lost.unrouted:
            lines.append(
                "  unrouted: no rule matched them; is `aib dev` running with their consumers "
                "(fraud_events, iot_anomaly, shop_events, pricing)?"
            )
        return "\n".join(lines)


def put_paced(
    bus: Bus,
    events: Iterator[SimEvent],
    rate: float,
    duration_s: float,
    on_progress: Callable[[float, int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[Put], int, float]:
    """Put events in batches of up to 10 (PutEvents' limit) at `rate` for `duration_s`.
    Returns the accepted puts, the refused count and the seconds it took."""
    batch = max(1, min(10, int(rate // 50)))
    bucket = TokenBucket(rate, burst=max(batch, rate / 10), clock=clock, sleep=sleep)
    puts: list[Put] = []
    refused = 0
    start = last_progress = clock()
    while clock() - start < duration_s:
        chunk = list(itertools.islice(events, batch))
        bucket.take(len(chunk))
        result = bus.put_events([s.event for s in chunk])
        refused += result.failed_count
        for sim, event_id in zip(chunk, result.event_ids, strict=True):
            if event_id is not None:
                puts.append(Put(event_id, sim.event.detail_type, sim.result))
        if on_progress is not None and clock() - last_progress >= 1.0:
            last_progress = clock()
            on_progress(last_progress - start, len(puts))
    return puts, refused, clock() - start


class BusRecords:
    """Read-only queries on the local bus's SQLite file (`<state>/events.db`)."""

    def __init__(self, db_path: Path) -> None:
        self._db_path = db_path
        if not db_path.exists():
            raise FileNotFoundError(
                f"{db_path} does not exist: start `aib dev` (or pass its --state) first"
            )
        self._conn = connect(db_path)
        self._conn.execute("CREATE TEMP TABLE IF NOT EXISTS sim_ids (id TEXT PRIMARY KEY)")

    def close(self) -> None:
        self._conn.close()

    def last_seq(self) -> int:
        row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM bus_archive").fetchone()
        return int(row[0])

    def backlog(self) -> int:
        row = self._conn.execute(
            "SELECT COUNT(*) FROM bus_deliveries WHERE state = 'pending'"
        ).fetchone()
        return int(row[0])

    def track(self, puts: list[Put]) -> None:
        self._conn.execute("DELETE FROM sim_ids")
        self._conn.executemany("INSERT INTO sim_ids VALUES (?)", [(p.event_id,) for p in puts])

    def deliveries(self) -> dict[str, list[tuple[str, float | None]]]:
        """Tracked event id -> (state, finished_at) of each of its deliveries. A delivery into a
        queue (a rule filling a consumer's queue) is finished when the consumer deleted the
        message (`queue_done` of the local queues, beside the bus's file), and `pending`
        until then: the delivery itself only put it in the queue."""
        out: dict[str, list[tuple[str, float | None]]] = {}
        rows = self._conn.execute(
            "SELECT d.event_id, d.state, d.finished_at, d.message_id FROM bus_deliveries d "
            "JOIN sim_ids s ON s.id = d.event_id WHERE d.replay_name IS NULL"
        )
        queued: dict[str, str] = {}  # message id -> the event it carries
        for event_id, state, finished, message_id in rows:
            if message_id is not None and state == "delivered":
                queued[message_id] = event_id
                continue
            out.setdefault(event_id, []).append((state, finished))
        done = self._consumed(list(queued))
        for message_id, event_id in queued.items():
            at = done.get(message_id)
            out.setdefault(event_id, []).append(
                ("pending", None) if at is None else ("delivered", at)
            )
        return out

    def _consumed(self, message_ids: list[str]) -> dict[str, float]:
        """Message id -> when its consumer deleted it, for those of `message_ids` it did."""
        queues = self._db_path.parent / "queues.db"
        if not message_ids or not queues.exists():
            return {}
        out: dict[str, float] = {}
        with connection(queues) as c:
            if c.execute("SELECT 1 FROM sqlite_master WHERE name = 'queue_done'").fetchone():
                for start in range(0, len(message_ids), 500):
                    chunk = message_ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    for mid, at in c.execute(
                        f"SELECT id, done_at FROM queue_done WHERE id IN ({marks})", chunk
                    ):
                        out[str(mid)] = float(at)
        return out

    def received(self) -> dict[str, float]:
        rows = self._conn.execute(
            "SELECT a.id, a.received_at FROM bus_archive a JOIN sim_ids s ON s.id = a.id"
        )
        return {str(event_id): float(at) for event_id, at in rows}

    def results_since(self, seq: int) -> list[tuple[str, str, float]]:
        """(caused_by, detail-type, received_at) of archived events after `seq` with a cause."""
        rows = self._conn.execute(
            "SELECT json_extract(event, '$.detail.caused_by'), "
            "json_extract(event, '$.\"detail-type\"'), received_at FROM bus_archive "
            "WHERE seq > ? AND json_extract(event, '$.detail.caused_by') IS NOT NULL",
            (seq,),
        )
        return [(str(c), str(t), float(at)) for c, t, at in rows]


@dataclass
class Outcome:
    lost: Lost
    to_result: dict[str, list[float]]
    to_processed: list[float]
    results: Counter[str]


def outcome(puts: list[Put], refused: int, records: BusRecords, since_seq: int) -> Outcome:
    deliveries = records.deliveries()
    received = records.received()
    results: dict[str, dict[str, float]] = {}
    counts: Counter[str] = Counter()
    for cause, detail_type, at in records.results_since(since_seq):
        results.setdefault(cause, {}).setdefault(detail_type, at)
        counts[detail_type] += 1
    lost = Lost(refused=refused)
    to_result: dict[str, list[float]] = {}
    to_processed: list[float] = []
    for p in puts:
        rows = deliveries.get(p.event_id, [])
        states = {state for state, _ in rows}
        if not rows:
            lost.unrouted += 1
        elif "failed" in states:
            lost.failed += 1
        elif "pending" in states:
            lost.pending += 1
        else:
            done = max(f or 0.0 for _, f in rows)
            if p.result is not None:
                result_at = results.get(p.event_id, {}).get(p.result)
                if result_at is None:
                    lost.no_result += 1
                    continue
                to_result.setdefault(p.result, []).append(result_at - received[p.event_id])
                # Processed: every consumer done and the result out.
                done = max(done, result_at)
            to_processed.append(done - received[p.event_id])
    return Outcome(lost, to_result, to_processed, counts)


def simulate(
    bus: Bus,
    db_path: Path,
    scenario: Scenario,
    *,
    rate: float,
    duration_s: float,
    seed: int = 0,
    drain_timeout_s: float = 60.0,
    echo: Callable[[str], None] | None = None,
) -> Report:
    """Put `scenario` on `bus` (whose records are in `db_path`) at `rate` for `duration_s`,
    then wait up to `drain_timeout_s` for every event's consumers and results."""
    records = BusRecords(db_path)
    try:
        since = records.last_seq()
        run = f"{int(time.time()):x}{seed}"
        events = stream(scenario, seed, run)  # builds the scenario's world: before the clock

        def progress(elapsed: float, n: int) -> None:
            if echo is not None:
                echo(Progress(elapsed, n, records.backlog()).line(rate))

        puts, refused, took = put_paced(bus, events, rate, duration_s, progress)
        records.track(puts)
        ended = time.monotonic()
        result = outcome(puts, refused, records, since)
        while (result.lost.pending or result.lost.no_result) and (
            time.monotonic() - ended < drain_timeout_s
        ):
            time.sleep(0.5)
            result = outcome(puts, refused, records, since)
        drain = time.monotonic() - ended
    finally:
        records.close()
    return Report(
        scenario=scenario,
        target_rate_per_s=rate,
        duration_s=round(took, 2),
        put=len(puts),
        put_rate_per_s=round(len(puts) / took, 1) if took else 0.0,
        by_type=dict(Counter(p.detail_type for p in puts)),
        to_result={k: Latency.of(v) for k, v in result.to_result.items()},
        to_processed=Latency.of(result.to_processed),
        lost=result.lost,
        drain_s=round(drain, 2),
        results=dict(result.results),
    )


def report_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2)
