"""Local queue engine throughput against a bare-SQLite baseline, one thread on one core.

A loop is what a busy producer + consumer pair does: `send_batch(10)`, `receive(10)`,
`delete_batch(10)`. Throughput is messages through the whole loop per second, median of
several rounds. The baseline does the minimal SQLite work for the same rows in the same
database settings (WAL, synchronous=NORMAL, same table and index shape): insert 10 rows in a
transaction, select the 10 oldest visible, delete them in a transaction. The gap between the
two is the engine's own cost (checks, receipt handles, receive counts, models).

Two scenarios: an empty queue, and a queue holding a standing backlog (receive stays
O(log n) through the (queue, visible_at) index). Engine and baseline rounds are interleaved
so both see the same machine noise. Target: >= 5,000 messages/s. Writes
`bench/results/queue.json`.

    .venv/bin/python tests/bench/bench_queue.py [--quick] [--rounds 7] [--loops 500]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import RESULTS

TARGET_MSG_PER_S = 5_000
BATCH = 10
BODY = json.dumps(
    {"transaction_id": "t" * 36, "amount": 129.99, "currency": "EUR", "pad": "x" * 96}
)

BASELINE_SCHEMA = """
CREATE TABLE m (
  seq INTEGER PRIMARY KEY, queue INTEGER NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
  attrs TEXT, sent_at REAL NOT NULL, visible_at REAL NOT NULL
);
CREATE INDEX m_visible ON m (queue, visible_at);
"""


def pin_to_one_core() -> int | None:
    """Run on a single core so the number means 'one core' on any machine."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def engine_loop(folder: Path, backlog: int) -> Callable[[int], None]:
    from aibackend.adapters.local_queue import SqliteQueueService
    from aibackend.ports import QueueConfig

    q = SqliteQueueService(folder / "engine.db").ensure(QueueConfig(name="bench"))
    bodies = [BODY] * BATCH
    for _ in range(backlog // BATCH):
        q.send_batch(bodies)

    def run(loops: int) -> None:
        for _ in range(loops):
            q.send_batch(bodies)
            got = q.receive(BATCH)
            q.delete_batch([m.receipt_handle for m in got])

    return run


def baseline_loop(folder: Path, backlog: int) -> Callable[[int], None]:
    conn = sqlite3.connect(folder / "baseline.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(BASELINE_SCHEMA)
    insert = (
        "INSERT INTO m (queue, id, body, attrs, sent_at, visible_at) VALUES (1, ?, ?, NULL, ?, ?)"
    )
    select = (
        "SELECT seq, id, body FROM m WHERE queue = 1 AND visible_at <= ? "
        "ORDER BY visible_at, seq LIMIT ?"
    )

    def send() -> None:
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, [(str(uuid.uuid4()), BODY, now, now) for _ in range(BATCH)])
        conn.execute("COMMIT")

    for _ in range(backlog // BATCH):
        send()

    def run(loops: int) -> None:
        for _ in range(loops):
            send()
            rows = conn.execute(select, (time.time(), BATCH)).fetchall()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("DELETE FROM m WHERE seq = ?", [(r[0],) for r in rows])
            conn.execute("COMMIT")

    return run


def measure(cases: dict[str, Callable[[int], None]], rounds: int, loops: int) -> dict[str, Any]:
    for run in cases.values():
        run(max(1, loops // 5))  # warm-up: statement cache, page cache, WAL file
    rates: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for name, run in cases.items():
            t0 = time.perf_counter()
            run(loops)
            rates[name].append(loops * BATCH / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {
        **{f"{k}_msg_per_s": round(v) for k, v in med.items()},
        **{f"{k}_rounds_msg_per_s": [round(r) for r in rates[k]] for k in cases},
        "engine_vs_baseline": round(med["engine"] / med["baseline"], 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer, shorter rounds (smoke run)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--loops", type=int, default=500, help="loops of 10 messages per round")
    ap.add_argument("--backlog", type=int, default=10_000, help="standing messages, scenario 2")
    ap.add_argument("--dir", type=Path, default=None, help="where the databases go (temp)")
    args = ap.parse_args()
    rounds, loops = (3, 100) if args.quick else (args.rounds, args.loops)
    core = pin_to_one_core()

    scenarios: dict[str, Any] = {}
    for label, backlog in (("empty_queue", 0), (f"backlog_{args.backlog}", args.backlog)):
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            cases = {
                "engine": engine_loop(Path(tmp), backlog),
                "baseline": baseline_loop(Path(tmp), backlog),
            }
            scenarios[label] = {"backlog": backlog, **measure(cases, rounds, loops)}

    passed = all(s["engine_msg_per_s"] >= TARGET_MSG_PER_S for s in scenarios.values())
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "cpu": platform.machine(),
            "cores": os.cpu_count(),
            "pinned_to_core": core,
        },
        "loop": f"send_batch({BATCH}) + receive({BATCH}) + delete_batch({BATCH})",
        "body_bytes": len(BODY.encode()),
        "rounds": rounds,
        "messages_per_round": loops * BATCH,
        "target_msg_per_s": TARGET_MSG_PER_S,
        "target_met": passed,
        "scenarios": scenarios,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "queue.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
