"""Sentiment service benchmark: warm latency of the Lambda handler, one text and 100 texts,
next to the raw onnxruntime `session.run` on the same texts, measured in the same run.

The texts are the hand-written holdout's (English review sentences, 40 to 90 characters);
a report-only case sends 100 texts at the 5,000-character limit. Writes
`bench/results/sentiment.json`.

    .venv/bin/python tests/bench/bench_sentiment.py [--state-dir .aib] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import RESULTS, ROOT, serve_production, timed

EVENT = ROOT / "events" / "apigw" / "sentiment.json"
sys.path.insert(0, str(ROOT / "functions"))


def compare(handler: Any, ctx: Any, session: Any, texts: list[str], n: int) -> dict[str, Any]:
    """Handler (API Gateway event in, response out) vs `session.run` on the same texts,
    interleaved in rounds so both see the same machine noise."""
    import numpy as np

    event = json.loads(EVENT.read_text())
    event["body"] = json.dumps({"texts": texts})
    resp = handler(event, ctx)
    assert resp["statusCode"] == 200, resp["body"][:300]
    assert len(json.loads(resp["body"])["results"]) == len(texts)
    batch = np.array(texts, dtype=object).reshape(-1, 1)
    cases: dict[str, Callable[[], Any]] = {
        "handler": lambda: handler(event, ctx),
        "raw_session_run": lambda: session.run(["probabilities"], {"text": batch}),
    }
    rounds, per_round = 5, max(1, n // 5)
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            samples[name].append(timed(fn, per_round, warmup=max(5, per_round // 10), digits=4))
    out: dict[str, Any] = {"texts": len(texts)}
    for name, runs in samples.items():
        # The median round's figures: one noisy round does not decide the result.
        p50 = sorted(r["p50_ms"] for r in runs)[rounds // 2]
        p99 = sorted(r["p99_ms"] for r in runs)[rounds // 2]
        out[name] = {"p50_ms": p50, "p99_ms": p99, "n": per_round * rounds}
    out["handler_overhead_p50_ms"] = round(
        out["handler"]["p50_ms"] - out["raw_session_run"]["p50_ms"], 4
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--state-dir", type=Path, default=ROOT / ".aib")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    args = ap.parse_args()
    n_one, n_batch = (500, 50) if args.quick else (5000, 500)

    version = serve_production(args.state_dir.resolve(), "sentiment", "sentiment")

    from aibackend.training.sentiment import HOLDOUT_SOURCE

    with HOLDOUT_SOURCE.open(newline="", encoding="utf-8") as f:
        holdout = [row["text"] for row in csv.DictReader(f)]
    long_text = (" ".join(holdout) * 2)[:5000]

    # Metrics go to stdout as EMF on every invocation; keep them out of the terminal.
    real_stdout = sys.stdout
    sys.stdout = Path(os.devnull).open("w")  # noqa: SIM115 - closed in `finally`
    try:
        import sentiment.app as app_module
        from sentiment.handler import handler

        from aibackend.local.context import LocalLambdaContext

        ctx = LocalLambdaContext(function_name="sentiment", memory_limit_in_mb=1769, timeout_s=10)
        session = app_module.MODEL.session
        one = compare(handler, ctx, session, holdout[:1], n_one)
        hundred = compare(handler, ctx, session, holdout[:100], n_batch)
        longest = compare(handler, ctx, session, [long_text] * 100, max(10, n_batch // 10))
    finally:
        sys.stdout.close()
        sys.stdout = real_stdout

    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.machine(),
            "cores": os.cpu_count(),
        },
        "model": {"name": "sentiment", "version": version},
        "warm_handler_1_text": one,
        "warm_handler_100_texts": {
            **hundred,
            "texts_per_s_at_p50": round(100 / (hundred["handler"]["p50_ms"] / 1000)),
        },
        "warm_handler_100_texts_of_5000_chars_report_only": longest,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "sentiment.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
