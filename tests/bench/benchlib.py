"""What the benchmark scripts share: where results go, percentiles, cold starts.

The scripts run as `python tests/bench/bench_<name>.py`, so this folder is on `sys.path`.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"


def pct(xs: list[float], q: float) -> float:
    """The `q` quantile of `xs` (nearest rank)."""
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def host_speed_s(n: int = 2_000_000, repeat: int = 3) -> float:
    """Seconds a fixed pure-Python loop takes (median of `repeat`): how fast this shared
    machine's cores are right now. Other tenants on the same host make it vary by half again
    (0.10-0.18 s here) from one minute to the next; a result measured while it is high had
    that much less CPU."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        sum(i * i for i in range(n))
        times.append(time.perf_counter() - t0)
    return round(sorted(times)[len(times) // 2], 3)


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


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """The functions' log and EMF metric lines off the terminal: file descriptor 1 itself goes
    to /dev/null, so `--isolate`'s worker processes (which inherit it) are quiet too."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _tree_rss_kib(pid: int) -> int:
    """Resident memory of `pid` and all its descendants (Linux /proc), KiB."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
            )
            for task in Path(f"/proc/{p}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, StopIteration, ValueError):
            continue  # the process ended meanwhile
    return total


class TreeMemory(threading.Thread):
    """Samples the resident memory of this process and its children (the `--isolate` workers)
    every `every_s`; `peak_mb` is the largest sum seen."""

    def __init__(self, every_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.every_s = every_s
        self.peak_kib = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.every_s):
            self.peak_kib = max(self.peak_kib, _tree_rss_kib(os.getpid()))

    def stop(self) -> None:
        self._done.set()
        self.join()

    @property
    def peak_mb(self) -> float:
        return round(self.peak_kib / 1024, 1)
