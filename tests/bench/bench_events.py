"""Real-time fraud and alerting benchmarks: warm handler latency in process, and event-to-result
latency through the local runtime, each next to a baseline measured in the same run.

- `fraud_events` warm: the handler (contract parse, online feature table write + read, score,
  publish two-or-one events a transaction on the local bus, the event ledger) on SQS batches of
  10 distinct `Transaction Created` events of a few cards, as its queue delivers them; per
  batch and per event; baseline: the model call alone on each transaction (what scoring one
  costs without features, bus or ledger).
- `alerts` warm: the handler with the log sink (dedup claim, rate slot, state in SQLite);
  baseline: parsing the event alone.
- end to end: `Transaction Created` put on the runtime's bus -> `Transaction Scored` archived,
  at a steady rate (the issue's target: p99 under 250 ms), from the bus archive's receive times.

    .venv/bin/python tests/bench/bench_events.py [--quick]

Writes `bench/results/events.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import RESULTS, ROOT
from benchlib import pct as _pct

sys.path.insert(0, str(ROOT / "functions"))
SAMPLES = ROOT / "events" / "eventbridge"


def summary(lat_ms: list[float]) -> dict[str, Any]:
    return {
        "p50_ms": round(_pct(lat_ms, 0.50), 3),
        "p99_ms": round(_pct(lat_ms, 0.99), 3),
        "n": len(lat_ms),
    }


def created_events(n: int, cards: int) -> list[dict[str, Any]]:
    """`n` distinct Transaction Created events, one a minute per card, round robin."""
    sample = json.loads((SAMPLES / "transaction_created.json").read_text())
    start = datetime(2026, 11, 27, 8, tzinfo=UTC)
    out = []
    for i in range(n):
        e = json.loads(json.dumps(sample))
        e["id"] = f"bench-{i:06d}"
        e["detail"].update(
            transaction_id=f"bench-txn-{i:06d}",
            card_id=f"bench-card-{i % cards}",
            timestamp=(start + timedelta(minutes=i // cards)).isoformat(),
            amount=20.0 + (i % 97),
        )
        out.append(e)
    return out


def timed(fn: Callable[[Any], Any], items: list[Any]) -> list[float]:
    lat = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        lat.append((time.perf_counter() - t0) * 1000)
    return lat


def fraud_warm(n: int) -> dict[str, Any]:
    import fraud_events.handler as h

    from aibackend.contracts import parse
    from aibackend.fraud.features import transactions_matrix
    from aibackend.fraud.schema import Transaction
    from aibackend.local.context import LocalLambdaContext

    ctx = LocalLambdaContext(function_name="fraud_events", memory_limit_in_mb=1769, timeout_s=10)
    events = created_events(n + 100, cards=20)
    for e in events[:100]:  # warm-up (also fills the cards' history a little)
        h.handler(sqs_batch([e]), ctx)
    # The SQS batches Lambda hands the function: 10 events each, as its queue's batch_size.
    batches = [sqs_batch(events[i : i + 10]) for i in range(100, n + 100, 10)]
    batch_lat = timed(lambda b: h.handler(b, ctx), batches)
    txns = [
        Transaction.model_validate(
            parse(e).detail.model_dump(
                exclude={"schema_version", "correlation_id", "txn_count_1h", "txn_count_24h"}
            )
        )
        for e in events[100:]
    ]
    model_lat = timed(lambda t: h.MODEL.predict_proba(transactions_matrix([t])), txns)
    return {
        "handler_batch_of_10": summary(batch_lat),
        "handler_per_event_ms": round(sum(batch_lat) / n, 3),
        "baseline_model_call_only": summary(model_lat),
    }


def sqs_batch(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The SQS event of `events` as fraud_events' queue delivers them (a body per event)."""
    from aibackend.events.shapes import sqs_event
    from aibackend.ports import QueueMessage

    messages = [
        QueueMessage(message_id=e["id"], receipt_handle=e["id"], body=json.dumps(e), md5_of_body="")
        for e in events
    ]
    return sqs_event(messages, queue_name="fraud-events-transactions", now=datetime.now(UTC))


def alerts_warm(n: int) -> dict[str, Any]:
    import alerts.handler as h

    from aibackend.contracts import parse
    from aibackend.local.context import LocalLambdaContext

    ctx = LocalLambdaContext(function_name="alerts", memory_limit_in_mb=256, timeout_s=10)
    sample = json.loads((SAMPLES / "fraud_suspected.json").read_text())
    events = []
    for i in range(n + 50):
        e = json.loads(json.dumps(sample))
        e["id"] = f"bench-alert-{i:06d}"
        e["detail"].update(transaction_id=f"bench-t-{i:06d}", card_id=f"bench-c-{i % 50}")
        events.append(e)
    for e in events[:50]:
        h.handler(e, ctx)
    handler_lat = timed(lambda e: h.handler(e, ctx), events[50:])
    parse_lat = timed(parse, events[50:])
    return {"handler_log_sink": summary(handler_lat), "baseline_parse_only": summary(parse_lat)}


def end_to_end(state: Path, n: int, rate: float) -> dict[str, Any]:
    """Put `n` Transaction Created at `rate`/s on a runtime serving fraud_events; latency from
    each one's archive receive time to its Transaction Scored's."""
    from aibackend.catalog import load_catalog
    from aibackend.local.runtime import LocalRuntime
    from aibackend.ports import PutEvent
    from aibackend.settings import PlatformSettings

    functions = state.parent / "functions"
    shutil.copytree(ROOT / "functions" / "fraud_events", functions / "fraud_events")
    rt = LocalRuntime(load_catalog(functions), PlatformSettings(state_dir=state))
    rt.start()
    try:
        events = created_events(n, cards=50)
        t0 = time.perf_counter()
        for i, e in enumerate(events):
            e["detail"]["transaction_id"] = f"e2e-{i:06d}"
            rt.bus.put_events(
                [
                    PutEvent(
                        source="aib.payments", detail_type="Transaction Created", detail=e["detail"]
                    )
                ]
            )
            pause = t0 + (i + 1) / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        put_s = time.perf_counter() - t0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(latencies(state)) >= n:
                break
            time.sleep(0.2)
        lat = latencies(state)
    finally:
        rt.stop()
    return {
        "events": n,
        "target_rate_per_s": rate,
        "achieved_put_rate_per_s": round(n / put_s, 1),
        "scored": len(lat),
        "lost": n - len(lat),
        "put_to_scored": summary(lat) if lat else None,
        "target_p99_ms": 250,
    }


def latencies(state: Path) -> list[float]:
    """Receive-time differences, in ms, of each Transaction Scored and the event that caused it
    (the local bus archive's `received_at`)."""
    with sqlite3.connect(state / "events.db") as c:
        rows = c.execute("SELECT id, received_at, event FROM bus_archive").fetchall()
    received = {r[0]: r[1] for r in rows}
    out = []
    for _, at, text in rows:
        event = json.loads(text)
        if event["detail-type"] == "Transaction Scored":
            cause = event["detail"]["caused_by"]
            if cause in received:
                out.append((at - received[cause]) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer events (smoke run)")
    args = ap.parse_args()
    n_warm, n_e2e, rate = (300, 200, 50.0) if args.quick else (2000, 1000, 100.0)

    work = Path(tempfile.mkdtemp(prefix="aib-bench-events-"))
    state = work / "state"
    os.environ.update(AIB_STATE_DIR=str(state), AIB_ADAPTERS="local")
    os.environ["POWERTOOLS_METRICS_NAMESPACE"] = "aibackend"
    from aibackend.catalog import load_function
    from aibackend.settings import PlatformSettings, model_version_env
    from aibackend.training.local import train_local

    settings = PlatformSettings(state_dir=state)
    print("training a fraud model for the run ...", flush=True)
    prod = train_local("fraud", settings, rows=50_000, echo=lambda _line: None)
    os.environ[model_version_env("fraud")] = str(prod.version)
    for fn in ("fraud_events", "alerts"):
        os.environ.update(load_function(ROOT / "functions" / fn).environment)
    os.environ["POWERTOOLS_LOG_LEVEL"] = "ERROR"

    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.machine(),
            "cores": os.cpu_count(),
        },
    }
    # The handlers' EMF metric lines still go to stdout (as on Lambda), just not to the screen.
    with Path(os.devnull).open("w") as quiet:
        print("fraud_events warm ...", flush=True)
        os.environ["POWERTOOLS_SERVICE_NAME"] = "fraud_events"
        with contextlib.redirect_stdout(quiet):
            results["fraud_events_warm"] = fraud_warm(n_warm)
        print("alerts warm ...", flush=True)
        os.environ["POWERTOOLS_SERVICE_NAME"] = "alerts"
        with contextlib.redirect_stdout(quiet):
            results["alerts_warm"] = alerts_warm(n_warm)
        print("end to end through the local runtime ...", flush=True)
        e2e_state = work / "e2e" / "state"
        shutil.copytree(state, e2e_state, ignore=shutil.ignore_patterns("events.db*", "tables"))
        with contextlib.redirect_stdout(quiet):
            results["end_to_end"] = end_to_end(e2e_state, n_e2e, rate)
    shutil.rmtree(work, ignore_errors=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "events.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
