"""Monitoring services benchmarks: the capture consumer's cost per captured prediction against
the inference cost of the same predictions, and the monitor's time to judge an hour.

Both measured in the same run on the same machine (shared machines are noisy: read the ratios).
Trains a small fraud model into a temporary state folder first. Writes
`bench/results/monitoring.json`.

    .venv/bin/python tests/bench/bench_monitoring.py [--quick]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import RESULTS, ROOT
from benchlib import pct as _pct

sys.path.insert(0, str(ROOT / "functions"))

#: One SQS batch as monitor_capture may receive it: 10 messages of 10 records (fraud_score
#: packs up to 10 records per message; the declared batch_size allows up to 100 messages).
MESSAGES, PER_MESSAGE = 10, 10


def _records(n: int) -> list[dict[str, Any]]:
    from aibackend.fraud.generator import generate_transactions, to_records

    return to_records(generate_transactions(n, seed=7))


def _sqs_event(txns: list[dict[str, Any]], scores: list[float]) -> dict[str, Any]:
    at = datetime.now(UTC).isoformat(timespec="milliseconds")
    records = []
    for m in range(MESSAGES):
        batch = [
            {
                "inference_id": f"inf-{m}-{k}",
                "correlation_id": "bench",
                "model": {"name": "fraud", "version": 1},
                "at": at,
                "inputs": txns[m * PER_MESSAGE + k] | {"card_id": "*****"},
                "output": {
                    "score": scores[m * PER_MESSAGE + k],
                    "decision": "decline" if scores[m * PER_MESSAGE + k] >= 0.5 else "approve",
                },
            }
            for k in range(PER_MESSAGE)
        ]
        records.append(
            {
                "messageId": f"msg-{m}",
                "receiptHandle": f"r-{m}",
                "body": json.dumps(batch, separators=(",", ":")),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:aib-inference-capture",
                "awsRegion": "eu-west-1",
            }
        )
    return {"Records": records}


def _apigw_event(txns: list[dict[str, Any]]) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / "apigw" / "fraud_score.json").read_text())
    event["body"] = json.dumps({"transactions": txns})
    return event


def _timed(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    args = ap.parse_args()
    rounds, per_round = (3, 20) if args.quick else (7, 60)

    state = Path(tempfile.mkdtemp(prefix="aib-bench-monitoring-"))
    os.environ.update(
        {
            "AIB_STATE_DIR": str(state),
            "AIB_ADAPTERS": "local",
            "AIB_MODEL_BUCKET": "models",
            "POWERTOOLS_METRICS_NAMESPACE": "aibackend",
        }
    )
    from aibackend.capture import load_capture
    from aibackend.local.context import LocalLambdaContext
    from aibackend.monitoring.config import ENV, monitor_env, monitored_models
    from aibackend.settings import PlatformSettings, model_version_env
    from aibackend.training.local import train_local

    settings = PlatformSettings(state_dir=state)
    mv = train_local("fraud", settings, rows=20_000, echo=lambda _line: None)
    os.environ[model_version_env("fraud")] = str(mv.version)
    functions = ROOT / "functions"
    os.environ[ENV] = monitor_env(monitored_models(functions, load_capture(functions)))
    os.environ.pop("AIB_CAPTURE", None)  # the scoring baseline does not capture

    fraud = importlib.import_module("fraud_score.handler").handler
    capture = importlib.import_module("monitor_capture.handler").handler
    txns = _records(MESSAGES * PER_MESSAGE)
    score_event = _apigw_event(txns)
    ctx = LocalLambdaContext(function_name="bench", memory_limit_in_mb=1769, timeout_s=30)
    scored = json.loads(fraud(score_event, ctx)["body"])["results"]
    sqs_event = _sqs_event(txns, [r["score"] for r in scored])
    assert capture(sqs_event, ctx) == {"batchItemFailures": []}

    from aibackend.monitoring.ingest import delta_rows, ingest
    from aibackend.monitoring.profiles import profile_matrix

    bodies = [json.loads(r["body"]) for r in sqs_event["Records"]]
    n = MESSAGES * PER_MESSAGE
    # What one HTTP request captures: one record per message (100 messages, one batch).
    singles = [[r] for b in bodies for r in b]

    def compute_only(messages: list[list[dict[str, Any]]]) -> None:
        """What the consumer computes per batch, without storage: per message the feature
        matrix and ledger rows, then the bundle of their delta rows and its bytes."""
        done = [
            ingest(b, f"msg-{k}", attributes=("region",), positive=("decline",))
            for k, b in enumerate(messages)
        ]
        delta_rows([d.rows for d in done if d.rows is not None]).to_bytes()

    def as_profiles(messages: list[list[dict[str, Any]]]) -> None:
        """What it computed before it wrote rows: a profile of sketches per message."""
        for k, b in enumerate(messages):
            rows = ingest(b, f"msg-{k}", attributes=("region",), positive=("decline",)).rows
            assert rows is not None
            profile_matrix(
                rows.x, rows.features, delta_id="d", scores=rows.scores, predicted=rows.decisions
            ).to_bytes()

    # Interleaved rounds: all see the same machine noise.
    inference: list[float] = []
    consumer: list[float] = []
    compute: list[float] = []
    single: list[float] = []
    single_profiles: list[float] = []
    for _ in range(rounds):
        inference += _timed(lambda: fraud(score_event, ctx), per_round)
        consumer += _timed(lambda: capture(sqs_event, ctx), per_round)
        compute += _timed(lambda: compute_only(bodies), per_round)
        single += _timed(lambda: compute_only(singles), per_round)
        single_profiles += _timed(lambda: as_profiles(singles), per_round)

    # The monitor: an hour of 100 such batches (10,000 captured predictions, 1,000 deltas).
    from aibackend.monitoring.config import settings_for, settings_from_env
    from aibackend.monitoring.ledger import open_ledger
    from aibackend.monitoring.profiles import WindowKey
    from aibackend.monitoring.runner import platform_ports
    from aibackend.monitoring.service import monitor_window

    for b in range(1, 100):
        ev = json.loads(
            json.dumps(sqs_event).replace('"msg-', f'"msg-{b}-').replace('"inf-', f'"inf-{b}-')
        )
        capture(ev, ctx)
    hour = WindowKey.for_time(datetime.now(UTC), "hour")
    ports = platform_ports(settings)
    cfg = settings_for("fraud", settings_from_env())
    judge = _timed(
        lambda: monitor_window(
            ports,
            open_ledger("fraud", settings),
            "fraud",
            hour,
            cfg,
            cause="bench",
            now=datetime.now(UTC),
        ),
        3 if args.quick else 5,
    )
    result = {
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.machine(),
            "cpus": os.cpu_count(),
        },
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "capture_consumer": {
            "event": f"SQS batch: {MESSAGES} messages x {PER_MESSAGE} records",
            "note": "local adapters: 2 object puts (temp file + fsync) and 1 SQLite commit "
            "per batch dominate",
            "p50_ms": round(_pct(consumer, 0.5), 3),
            "p99_ms": round(_pct(consumer, 0.99), 3),
            "per_record_us": round(statistics.median(consumer) * 1000 / n, 1),
            "n": len(consumer),
        },
        "baseline_fraud_score_same_records": {
            "event": f"API Gateway POST /v1/fraud/score, {n} transactions",
            "p50_ms": round(_pct(inference, 0.5), 3),
            "p99_ms": round(_pct(inference, 0.99), 3),
            "per_record_us": round(statistics.median(inference) * 1000 / n, 1),
            "n": len(inference),
        },
        "consumer_compute_only": {
            "what": "ingest (transactions -> feature matrix, ledger rows) and the bytes of "
            "the batch's delta rows, for the same batch, without storage",
            "p50_ms": round(_pct(compute, 0.5), 3),
            "per_record_us": round(statistics.median(compute) * 1000 / n, 1),
        },
        "consumer_compute_only_one_record_per_message": {
            "what": f"the same for {n} messages of one record (one HTTP request each)",
            "p50_ms": round(_pct(single, 0.5), 3),
            "per_record_us": round(statistics.median(single) * 1000 / n, 1),
            "baseline_profile_per_message": {
                "what": "a profile of sketches per message and its bytes (the format before "
                "delta rows), same messages, same rounds",
                "p50_ms": round(_pct(single_profiles, 0.5), 3),
                "per_record_us": round(statistics.median(single_profiles) * 1000 / n, 1),
            },
        },
        "ratio_compute_to_inference_p50": round(
            statistics.median(compute) / statistics.median(inference), 3
        ),
        "ratio_consumer_to_inference_p50": round(
            statistics.median(consumer) / statistics.median(inference), 3
        ),
        "monitor_hour": {
            "predictions": 100 * n,
            "deltas": 100 * MESSAGES,
            "p50_ms": round(statistics.median(judge), 1),
            "max_ms": round(max(judge), 1),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "monitoring.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
