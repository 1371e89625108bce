"""What the benchmark scripts share: where results go, percentiles, cold starts.

The scripts run as `python tests/bench/bench_<name>.py`, so this folder is on `sys.path`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"


def pct(xs: list[float], q: float) -> float:
    """The `q` quantile of `xs` (nearest rank)."""
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def timed(call: Callable[[], object], n: int, warmup: int = 10, digits: int = 2) -> dict[str, Any]:
    """p50/p99 wall milliseconds of `n` calls of `call`, after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        lat.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(pct(lat, 0.5), digits), "p99_ms": round(pct(lat, 0.99), digits), "n": n}


def cold_start(
    code: str, env: dict[str, str], runs: int, cwd: Path | None = None
) -> dict[str, Any]:
    """Median of `runs` fresh interpreters running `code`, which prints the seconds it measured
    itself (imports, model load) as its last line."""
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=cwd or ROOT / "functions",
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(float(out.stdout.strip().splitlines()[-1]) * 1000)
    return {
        "median_ms": round(statistics.median(times), 1),
        "runs_ms": [round(t, 1) for t in times],
    }


def serve_production(state: Path, model: str, function: str) -> int:
    """Point this process at `state` as a function serving `model` sees it, training the model
    first if it has no production version; returns the version, pinned in the environment as
    CDK pins it on AWS (no registry lookup at cold start)."""
    os.environ["AIB_STATE_DIR"] = str(state)
    os.environ["AIB_ADAPTERS"] = "local"
    from aibackend.adapters import model_registry
    from aibackend.settings import PlatformSettings, model_version_env

    settings = PlatformSettings.from_env()
    prod = model_registry(settings).production(model)
    if prod is None:
        from aibackend.training.local import train_local

        prod = train_local(model, settings)
    os.environ[model_version_env(model)] = str(prod.version)
    os.environ["POWERTOOLS_METRICS_NAMESPACE"] = "aibackend"
    os.environ["POWERTOOLS_SERVICE_NAME"] = function
    return prod.version
