"""Recommendations service benchmarks: warm handler latency against raw `session.run` on the
same input, measured in the same run, plus cold start. Writes `bench/results/recommendations.json`.

    .venv/bin/python tests/bench/bench_recommendations.py [--state-dir .aib] [--quick]

The GET case is API Gateway's sample event (`events/apigw/recommendations_get.json`: a known
user, k=5); its baseline is `session.run` on that user's history row, the graph's whole work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import RESULTS, ROOT, cold_start, serve_production
from benchlib import pct as _pct

EVENTS = ROOT / "events" / "apigw"
sys.path.insert(0, str(ROOT / "functions"))

COLD_HANDLER = """
import time
t0 = time.perf_counter()
import recommendations.handler
print(time.perf_counter() - t0)
"""
COLD_BASELINE = """
import time
t0 = time.perf_counter()
import numpy, onnxruntime, fastapi, mangum
print(time.perf_counter() - t0)
"""


def latencies(cases: dict[str, Callable[[], Any]], n: int, rounds: int = 5) -> dict[str, Any]:
    """p50/p99 (ms) of each case; rounds interleave the cases so they share the machine's noise."""
    for fn in cases.values():
        for _ in range(200):  # warm-up
            fn()
    lat: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            for _ in range(n // rounds):
                t0 = time.perf_counter()
                fn()
                lat[name].append((time.perf_counter() - t0) * 1000)
    return {
        name: {"p50_ms": round(_pct(v, 0.5), 4), "p99_ms": round(_pct(v, 0.99), 4), "n": len(v)}
        for name, v in lat.items()
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--state-dir", type=Path, default=ROOT / ".aib")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    args = ap.parse_args()
    runs, n = (3, 1_000) if args.quick else (5, 10_000)
    version = serve_production(args.state_dir.resolve(), "recommendations", "recommendations")
    env = dict(os.environ)

    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.machine(),
            "cores": os.cpu_count(),
        },
        "model": {"name": "recommendations", "version": version},
    }
    print(f"cold start (fresh process, median of {runs}) ...", flush=True)
    handler_cold = cold_start(COLD_HANDLER, env, runs)
    base_cold = cold_start(COLD_BASELINE, env, runs)
    results["cold_start"] = {
        "recommendations_handler": handler_cold,
        "bare_baseline_numpy_onnxruntime_fastapi_mangum": base_cold,
        "ratio": round(handler_cold["median_ms"] / base_cold["median_ms"], 3),
    }

    get_event = json.loads((EVENTS / "recommendations_get.json").read_text())
    post_event = json.loads((EVENTS / "recommendations_post.json").read_text())
    user = get_event["pathParameters"]["user_id"]
    k = int(get_event["queryStringParameters"]["k"])
    print(f"warm latency ({n} calls per case, interleaved) ...", flush=True)
    # Metrics go to stdout as EMF on every invocation; keep them out of the terminal.
    real_stdout = sys.stdout
    sys.stdout = Path(os.devnull).open("w")  # noqa: SIM115 - closed in `finally`
    try:
        import recommendations.app as app_module
        from recommendations.handler import handler

        from aibackend.local.context import LocalLambdaContext

        model = app_module.MODEL
        assert model.knows_user(user), f"{user} is not in the model's training data"
        history = np.zeros((1, model.items), np.float32)
        history[0, model.data.histories.items_of(user)] = 1.0
        ctx = LocalLambdaContext(
            function_name="recommendations", memory_limit_in_mb=1024, timeout_s=10
        )
        for ev in (get_event, post_event):
            resp = handler(ev, ctx)
            assert resp["statusCode"] == 200, resp
        lat = latencies(
            {
                "handler_get_known_user": lambda: handler(get_event, ctx),
                "handler_post_session": lambda: handler(post_event, ctx),
                "recommender_for_user_report_only": lambda: model.for_user(user, k),
                "raw_session_run_same_history": lambda: model.run(history),
            },
            n,
        )
    finally:
        sys.stdout.close()
        sys.stdout = real_stdout
    raw = lat["raw_session_run_same_history"]["p50_ms"]
    results["warm"] = {
        **lat,
        "catalogue_items": model.items,
        "known_users": len(model.data.histories),
        "handler_get_over_raw_p50": round(lat["handler_get_known_user"]["p50_ms"] / raw, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "recommendations.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
