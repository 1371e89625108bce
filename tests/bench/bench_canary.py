"""Canary routing overhead: what `RoutedHost` adds to a fraud_score invocation under `aib dev`.

The baseline is the same in-process `FunctionHost.invoke` without a wrapper, measured in the
same run, interleaved round by round with the other cases (shared machines are noisy):

- `direct`: `FunctionHost.invoke` (baseline);
- `routed_idle`: through `RoutedHost` with no canary (every function serving a model over HTTP
  pays this);
- `canary_10pct`: a 10% canary (hash of the request id, one observation appended);
- `shadow_10pct`: a 10% shadow (the champion answers; the candidate scores on a background
  thread of the same process, so its work competes for the GIL: reported, not hidden).

Also the routing decision alone (`bucket`) in microseconds. Writes `bench/results/canary.json`.

    .venv/bin/python tests/bench/bench_canary.py [--state-dir .aib] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import RESULTS, ROOT, serve_production
from benchlib import pct as _pct


def _summary(lat: list[float]) -> dict[str, Any]:
    return {"p50_ms": round(_pct(lat, 0.5), 4), "p99_ms": round(_pct(lat, 0.99), 4), "n": len(lat)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--state-dir", type=Path, default=ROOT / ".aib")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    version = serve_production(args.state_dir.resolve(), "fraud", "fraud_score")

    from aibackend.catalog import load_function
    from aibackend.local.canary import Recorder, Route, RoutedHost
    from aibackend.local.host import FunctionHost
    from aibackend.ports import Canary

    spec = load_function(ROOT / "functions" / "fraud_score")
    champion, candidate = FunctionHost(spec), FunctionHost(spec)
    champion.load()
    candidate.load()
    event = json.loads((ROOT / "events" / "apigw" / "fraud_score.json").read_text())

    def canary(mode: str) -> Canary:
        return Canary(
            id=mode,
            candidate=version,
            champion=version,
            mode=mode,  # type: ignore[arg-type]
            percent=10,
            started_at=datetime.now(UTC),
            window_s=600,
            actor="bench",
        )

    idle = RoutedHost(champion)
    split, shadowed = RoutedHost(champion), RoutedHost(champion)
    recorders = {"canary": Recorder(), "shadow": Recorder()}
    split.route = Route(canary("canary"), candidate, recorders["canary"])
    shadowed.route = Route(canary("shadow"), candidate, recorders["shadow"])
    cases: dict[str, Any] = {
        "direct": champion.invoke,
        "routed_idle": idle.invoke,
        "canary_10pct": split.invoke,
        "shadow_10pct": shadowed.invoke,
    }
    # Metrics and logs go to stdout as EMF and JSON lines on every invocation; not measured.
    real_stdout = sys.stdout
    sys.stdout = Path(os.devnull).open("w")  # noqa: SIM115 - closed in `finally`
    try:
        out = _measure(cases, event, recorders, shadowed, quick=args.quick)
    finally:
        sys.stdout.close()
        sys.stdout = real_stdout
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "canary.json").write_text(json.dumps(out, indent=2) + "\n")
    json.dump(out, sys.stdout, indent=2)
    print()


def _measure(
    cases: dict[str, Any],
    event: dict[str, Any],
    recorders: dict[str, Any],
    shadowed: Any,
    *,
    quick: bool,
) -> dict[str, Any]:
    from aibackend.local.canary import bucket

    rounds, per_round = (5, 200) if quick else (20, 500)
    lat: dict[str, list[float]] = {name: [] for name in cases}
    counter = 0
    for invoke in cases.values():  # warm-up, both hosts
        for _ in range(200):
            counter += 1
            assert invoke(event, f"warm-{counter}")["statusCode"] == 200
    for _ in range(rounds):
        for name, invoke in cases.items():
            for _ in range(per_round):
                counter += 1
                rid = f"rid-{counter}"
                t0 = time.perf_counter()
                invoke(event, rid)
                lat[name].append((time.perf_counter() - t0) * 1000)
            recorders["canary"].drain()
            recorders["shadow"].drain()
    assert shadowed.route.shadow is not None
    shadowed.route.shadow.join()

    ids = [f"rid-{i}" for i in range(100_000)]
    t0 = time.perf_counter()
    for rid in ids:
        bucket(rid)
    bucket_us = (time.perf_counter() - t0) / len(ids) * 1e6

    results = {name: _summary(xs) for name, xs in lat.items()}
    base = results["direct"]["p50_ms"]
    return {
        "benchmark": "canary",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "event": "events/apigw/fraud_score.json (POST /v1/fraud/score, one transaction)",
        "warm_latency": results,
        "p50_overhead_ms_vs_direct": {
            name: round(r["p50_ms"] - base, 4) for name, r in results.items() if name != "direct"
        },
        "routing_decision_us": round(bucket_us, 3),
        "shadow_dropped": shadowed.route.shadow.dropped,
        "median_of_round_p50s_ms": {
            name: round(
                statistics.median(
                    _pct(xs[i : i + per_round], 0.5) for i in range(0, len(xs), per_round)
                ),
                4,
            )
            for name, xs in lat.items()
        },
    }


if __name__ == "__main__":
    main()
