"""Monitoring profile benchmarks: update throughput vs exact numpy quantiles, per-prediction and
per-batch cost, delta size, and window merge time. Writes `bench/results/profiles.json`.

    .venv/bin/python tests/bench/bench_profiles.py [--quick]

The baseline (numpy computing the same columns' exact quantiles and category counts) runs in
the same process on the same data, because shared machines are noisy; medians of repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from benchlib import RESULTS, ROOT

sys.path.insert(0, str(ROOT / "layers" / "common"))

from aibackend.monitoring.profiles import (
    Profile,
    ProfileAccumulator,
    ProfileSchema,
    Window,
    WindowKey,
    delta_id_for,
)

ROWS = 100_000
NUMERIC = tuple(f"num_{i}" for i in range(8))
CATEGORICAL = ("merchant_category", "currency", "region", "card_present")
SCHEMA = ProfileSchema(numeric=NUMERIC, categorical=CATEGORICAL)
RANKS = np.linspace(0.0, 1.0, 101)


def frame(n: int, seed: int) -> dict[str, np.ndarray]:
    """12 features shaped like the fraud service's: skewed amounts, counts, small categoricals."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(NUMERIC):
        col = rng.lognormal(3.0, 1.0, n) if i % 2 else rng.poisson(3.0 + i, n).astype(np.float64)
        col[rng.random(n) < 0.01] = np.nan
        out[name] = col
    out["merchant_category"] = rng.choice([f"mcc_{i}" for i in range(14)], n)
    out["currency"] = rng.choice(["EUR", "USD", "GBP", "CHF", "JPY", "AUD", "MXN"], n)
    out["region"] = rng.choice(["north", "south", "east", "west", "central", "apac", "americas"], n)
    out["card_present"] = rng.random(n) < 0.6
    return out


def median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def exact_baseline(f: dict[str, np.ndarray]) -> None:
    """What an exact profile computes without sketches: quantiles and category counts."""
    for name in NUMERIC:
        np.nanquantile(f[name], RANKS)
    for name in CATEGORICAL:
        np.unique(f[name], return_counts=True)


def throughput(repeats: int) -> dict[str, Any]:
    """Rows/s of profiling vs the exact numpy baseline, interleaved run by run (the machine is
    shared: each ratio compares runs made a few milliseconds apart)."""
    f = frame(ROWS, seed=1)
    scores = np.random.default_rng(2).random(ROWS)
    decisions = scores > 0.9
    cases: dict[str, Callable[[], object]] = {
        "profile": lambda: Profile.build(f, SCHEMA, delta_id="b"),
        "profile_with_prediction": lambda: Profile.build(
            f, SCHEMA, delta_id="b", scores=scores, predicted=decisions
        ),
        "numpy": lambda: exact_baseline(f),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            times[name].append(median_s(fn, 1))
    ratios = [n / p for n, p in zip(times["numpy"], times["profile"], strict=True)]
    return {
        "rows": ROWS,
        "features": len(NUMERIC) + len(CATEGORICAL),
        "profile_rows_per_s": round(ROWS / statistics.median(times["profile"])),
        "profile_with_prediction_rows_per_s": round(
            ROWS / statistics.median(times["profile_with_prediction"])
        ),
        "numpy_exact_quantiles_and_counts_rows_per_s": round(
            ROWS / statistics.median(times["numpy"])
        ),
        "ratio_profile_to_numpy_median_of_pairs": round(statistics.median(ratios), 3),
    }


def per_prediction() -> dict[str, Any]:
    """Cost of profiling one prediction and one 1,000-row batch.

    Single predictions: a fresh one-row delta each time (what not to do), and the module-level
    `ProfileAccumulator` an inference container keeps (list appends, one vectorized update per
    1,024 rows). Compare with the fraud service's warm p50 (bench/results/fraud.json).
    """
    f = frame(10_000, seed=3)
    rows = [
        {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in f.items()}
        for i in range(10_000)
    ]
    one = {k: v[:1] for k, v in f.items()}
    batch = frame(1_000, seed=4)

    def per_call_us(fn: Callable[[], object], calls: int) -> float:
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            runs.append((time.perf_counter() - t0) / calls * 1e6)
        return statistics.median(runs)

    def accumulate() -> None:
        acc = ProfileAccumulator(SCHEMA, source="bench")
        for i, row in enumerate(rows):
            acc.append(row, score=0.5, predicted=i % 9 == 0)
        acc.take()

    return {
        "single_row_new_delta_us": round(
            per_call_us(lambda: Profile.build(one, SCHEMA, delta_id="x"), 200), 1
        ),
        "single_row_accumulator_us": round(per_call_us(accumulate, 1) / len(rows), 2),
        "batch_1000_rows_new_delta_ms": round(
            per_call_us(lambda: Profile.build(batch, SCHEMA, delta_id="x"), 20) / 1000, 3
        ),
    }


def merges(repeats: int, many: int) -> dict[str, Any]:
    hours = [
        Profile.build(
            frame(4_000, seed=10 + h), SCHEMA, delta_id=delta_id_for("hour", str(h))
        ).to_bytes()
        for h in range(24)
    ]
    day_key = WindowKey.for_time(datetime(2024, 3, 1, tzinfo=UTC), "day")

    def merge_day() -> Window:
        w = Window(day_key)
        for blob in hours:
            w.add(Profile.from_bytes(blob))
        return w

    day_s = median_s(merge_day, repeats)
    small = [
        Profile.build(
            {k: v[i % 50 : i % 50 + 1] for k, v in frame(64, seed=5).items()},
            SCHEMA,
            delta_id=delta_id_for("delta", str(i)),
        ).to_bytes()
        for i in range(many)
    ]

    def merge_many() -> Window:
        w = Window(day_key)
        for blob in small:
            w.add(Profile.from_bytes(blob))
        return w

    many_s = median_s(merge_many, max(1, repeats // 3))
    return {
        "hourly_delta_bytes_4000_rows": len(hours[0]),
        "day_window_bytes": len(merge_day().profile.to_bytes()),  # type: ignore[union-attr]
        "merge_24_hourly_deltas_into_day_ms": round(day_s * 1000, 2),
        "single_row_delta_bytes": len(small[0]),
        f"merge_{many}_single_row_deltas_s": round(many_s, 3),
        "per_delta_merge_us": round(many_s / many * 1e6, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    args = ap.parse_args()
    repeats = 3 if args.quick else 15
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.machine(),
            "cores": os.cpu_count(),
        },
        "sketch": {"kll_k": SCHEMA.k, "max_exact_categories": SCHEMA.max_exact},
        "update_throughput_100k_rows_12_features": throughput(repeats),
        "profile_cost": per_prediction(),
        "merge": merges(repeats, many=1_000 if args.quick else 10_000),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "profiles.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
