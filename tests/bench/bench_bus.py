"""Local event bus benchmark: put-to-handler latency with the background dispatcher running.

Latency is measured from just before `put_events([event])` to the moment the bus enters the
`deliver` callable of the matching function target. Next to it, in the same run and
interleaved in rounds, a baseline: the bare `threading.Event` wake-up handoff between two
threads, the floor any in-process dispatcher pays. Writes `bench/results/bus.json`.
Target: p50 under 5 ms.

    .venv/bin/python tests/bench/bench_bus.py [--events 3000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import RESULTS
from benchlib import pct as _pct

from aibackend.adapters.local_bus import LocalEventBus, Target
from aibackend.events.patterns import compile_pattern
from aibackend.ports import PutEvent

TARGET_P50_MS = 5.0


def _summary(lat_ms: list[float]) -> dict[str, Any]:
    return {
        "p50_ms": round(_pct(lat_ms, 0.50), 4),
        "p90_ms": round(_pct(lat_ms, 0.90), 4),
        "p99_ms": round(_pct(lat_ms, 0.99), 4),
        "max_ms": round(max(lat_ms), 4),
        "n": len(lat_ms),
    }


class BusCase:
    """One bus with `rules` rules (one matching), a function target and 2 dispatcher threads."""

    def __init__(self, folder: Path, rules: int) -> None:
        self.entered = 0.0
        self.done = threading.Event()
        self.bus = LocalEventBus(folder / "events.db", deliver=self._deliver)
        self.bus.put_rule(
            "fraud",
            bus="aib",
            pattern={"source": ["aib.payments"], "detail": {"amount": [{"numeric": [">", 100]}]}},
            targets=[Target(kind="function", name="fraud_score", input_path="$.detail")],
        )
        for i in range(rules - 1):
            self.bus.put_rule(
                f"other-{i}",
                bus="aib",
                pattern={"source": [f"aib.other{i}"], "detail-type": [{"prefix": "X"}]},
                targets=[Target(kind="function", name=f"other_{i}")],
            )
        self.bus.start(workers=2)
        self.event = PutEvent(
            source="aib.payments",
            detail_type="Transaction Created",
            detail={"amount": 250.0, "currency": "EUR", "card": {"country": "FR"}},
        )

    def _deliver(self, target: Target, payload: Any) -> None:
        self.entered = time.perf_counter()
        self.done.set()

    def once(self) -> float:
        self.done.clear()
        t0 = time.perf_counter()
        self.bus.put_events([self.event])
        if not self.done.wait(5):
            raise RuntimeError("event not delivered within 5 s")
        return (self.entered - t0) * 1000

    def close(self) -> None:
        self.bus.close()


class HandoffBaseline:
    """Main thread sets an Event; a waiting thread wakes and records when: the bare handoff."""

    def __init__(self) -> None:
        self.go, self.back = threading.Event(), threading.Event()
        self.woke = 0.0
        self.stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            self.go.wait()
            self.woke = time.perf_counter()
            self.go.clear()
            if self.stop:
                return
            self.back.set()

    def once(self) -> float:
        self.back.clear()
        t0 = time.perf_counter()
        self.go.set()
        if not self.back.wait(5):
            raise RuntimeError("baseline thread did not answer")
        return (self.woke - t0) * 1000

    def close(self) -> None:
        self.stop = True
        self.go.set()
        self.thread.join(5)


def put_only(folder: Path, n: int) -> dict[str, Any]:
    """`put_events` call alone (archive + delivery rows, one transaction), no dispatcher."""
    bus = LocalEventBus(folder / "put.db", deliver=lambda t, p: None)
    bus.put_rule(
        "r",
        bus="aib",
        pattern={"source": ["aib.payments"]},
        targets=[Target(kind="function", name="f")],
    )
    event = PutEvent(source="aib.payments", detail_type="T", detail={"amount": 1.0})
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        bus.put_events([event])
        lat.append((time.perf_counter() - t0) * 1000)
    bus.close()
    return _summary(lat)


def match_100_rules(n: int) -> dict[str, Any]:
    """One event against 100 compiled patterns (all matching: the slowest case)."""
    rules = [
        compile_pattern(
            {
                "source": [f"aib.svc{i}", {"prefix": "aib."}],
                "detail": {
                    "amount": [{"numeric": [">", i, "<=", 1000]}],
                    "card": {"country": [{"anything-but": ["US", "CA"]}]},
                },
            }
        )
        for i in range(100)
    ]
    event = {"source": "aib.payments", "detail": {"amount": 250.0, "card": {"country": "FR"}}}
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        hits = sum(r.matches(event) for r in rules)
        lat.append((time.perf_counter() - t0) * 1000)
    assert hits == 100
    return _summary(lat)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=3000, help="events per measured series")
    ap.add_argument("--rules", type=int, default=20, help="rules on the bus (one matches)")
    ap.add_argument("--quick", action="store_true", help="300 events (smoke run)")
    args = ap.parse_args()
    n = 300 if args.quick else args.events
    rounds = 10

    with tempfile.TemporaryDirectory(prefix="aib-bench-bus-") as tmp:
        folder = Path(tmp)
        case = BusCase(folder, args.rules)
        base = HandoffBaseline()
        for _ in range(100):  # warm-up: SQLite pages, code paths, thread start
            case.once()
            base.once()
        bus_lat: list[float] = []
        base_lat: list[float] = []
        # Interleave rounds so both series see the same machine noise.
        for _ in range(rounds):
            bus_lat += [case.once() for _ in range(n // rounds)]
            base_lat += [base.once() for _ in range(n // rounds)]
        stats = case.bus.stats()
        case.close()
        base.close()
        put = put_only(folder, min(n, 2000))
    matching = match_100_rules(2000)

    bus_summary = _summary(bus_lat)
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.machine(),
            "cores": os.cpu_count(),
        },
        "setup": {
            "rules_on_bus": args.rules,
            "dispatcher_workers": 2,
            "sqlite": "WAL, synchronous=NORMAL",
        },
        "put_to_handler": bus_summary,
        "baseline_threading_event_handoff": _summary(base_lat),
        "put_events_call_only": put,
        "match_one_event_against_100_rules": matching,
        "deliveries": stats.model_dump(),
        "target": {
            "put_to_handler_p50_ms_below": TARGET_P50_MS,
            "met": bus_summary["p50_ms"] < TARGET_P50_MS,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "bus.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0 if results["target"]["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
