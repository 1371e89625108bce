"""Pipeline benchmark: one raw CSV end to end through `aib dev`'s local runtime.

Drops an N-row generator CSV (default 1,000,000; about 0.1% malformed rows) under
raw/transactions/ of a fresh state folder, with the pipeline functions as declared, and waits
until the run completes. Reports rows/s per stage (from the run table's per-chunk record
times) and end to end, and the process's peak resident memory (the runtime runs every stage in
this process; the score stage's fraud model is trained first, outside the timing). Baseline,
same run: reading the same file with the csv module alone, the floor of any streaming ingest.
`--isolate` runs the stages in worker processes, as `aib dev --isolate` does (both cores; the
peak memory is then the sampled sum over the process and its workers). Writes
`bench/results/pipeline.json` (`pipeline-isolate.json` with `--isolate`).

    .venv/bin/python tests/bench/bench_pipeline.py [--rows 1000000] [--chunk-size 1000] [--isolate]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import RESULTS, ROOT, TreeMemory, quiet_stdout

sys.path.insert(0, str(ROOT))

from aibackend.adapters.local import LocalObjectStore
from aibackend.catalog import load_catalog
from aibackend.local.runtime import LocalRuntime
from aibackend.pipeline.runs import RunStatus, run_id, run_store, status
from aibackend.settings import PlatformSettings
from aibackend.training.local import train_local

BUCKET = "pipeline-data"
#: Training rows of the fraud model the score stage loads (its size does not change scoring cost
#: much: the trees are capped by the hyperparameters, not by the data).
MODEL_ROWS = 100_000


def raw_csv(rows: int, path: Path) -> None:
    """Generator rows, every 1,000th amount made negative (quarantined), written by a child
    process so that generating them does not count in this process's peak memory."""
    code = f"""
from pathlib import Path
from aibackend.fraud.generator import generate_transactions, write_csv
path = Path({str(path)!r})
write_csv(generate_transactions({rows}, seed=11), path)
lines = path.read_text().splitlines(keepends=True)
amount = lines[0].split(",").index("amount")
for i in range(501, len(lines), 1000):
    cells = lines[i].split(",")
    cells[amount] = "-1"
    lines[i] = ",".join(cells)
path.write_text("".join(lines))
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def csv_floor(path: Path) -> float:
    """Rows/s of the csv module alone over the file: the floor of any streaming ingest."""
    t0 = time.perf_counter()
    with path.open(newline="", encoding="utf-8") as f:
        n = sum(1 for _ in csv.DictReader(f))
    return n / (time.perf_counter() - t0)


def stage_rates(s: RunStatus, chunks: list[Any]) -> dict[str, float]:
    """Rows per second of each stage: its rows over the time from the run's start to its
    last chunk (stages overlap, so each is bounded by the ones before it)."""
    start = s.run.started.timestamp()
    out = {}
    stages = (
        ("ingest", "received"),
        ("validate", "valid"),
        ("score", "scored"),
        ("store", "stored"),
    )
    for stage, count in stages:
        ends = [c.at for c in chunks if c.stage == stage]
        rows = s.counts[count] + (s.counts["quarantined"] if stage == "validate" else 0)
        out[stage] = round(rows / (max(ends) - start), 1) if ends else 0.0
    return out


def set_chunk_size(functions: Path, size: int) -> None:
    """`PIPELINE_CHUNK_SIZE` of the copied ingest function (its `[environment]`)."""
    toml = functions / "pipeline_ingest" / "function.toml"
    text, n = re.subn(
        r"(?m)^PIPELINE_CHUNK_SIZE = .*$", f'PIPELINE_CHUNK_SIZE = "{size}"', toml.read_text()
    )
    assert n == 1, f"{toml}: no single PIPELINE_CHUNK_SIZE line"
    toml.write_text(text)


def run(rows: int, chunk_size: int | None, isolate: bool = False) -> dict[str, Any]:
    # ignore_cleanup_errors: stopped functions may still be finishing a write as it is removed
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        folder = Path(tmp)
        raw = folder / "raw.csv"
        raw_csv(rows, raw)
        floor = csv_floor(raw)
        state = folder / "state"
        os.environ["AIB_STATE_DIR"] = str(state)
        functions = folder / "functions"  # the pipeline's functions only, as declared
        for src in sorted((ROOT / "functions").glob("pipeline_*")):
            shutil.copytree(src, functions / src.name, ignore=shutil.ignore_patterns("__pycache__"))
        if chunk_size is not None:
            set_chunk_size(functions, chunk_size)
        settings = PlatformSettings(state_dir=state)
        # The score stage's model, trained (in a child process) before the clock starts.
        train_local("fraud", settings, rows=MODEL_ROWS, echo=lambda _line: None)
        rt = LocalRuntime(load_catalog(functions), settings, isolate=isolate)
        memory = TreeMemory()
        memory.start()
        with quiet_stdout():
            rt.start()
        try:
            # Copied in under a temporary name, then renamed into place: what an upload does.
            inbox = state / "buckets" / BUCKET / "raw" / "transactions"
            inbox.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(raw, inbox / ".bench.csv.tmp")
            t0 = time.perf_counter()
            (inbox / ".bench.csv.tmp").rename(inbox / "bench.csv")
            store = LocalObjectStore(state / "buckets" / BUCKET, bucket=BUCKET)
            info = store.head("raw/transactions/bench.csv")
            rid = run_id(BUCKET, "raw/transactions/bench.csv", info.etag)
            runs = run_store(rt.settings)
            # The completion record is one row; a whole status reads every chunk's counts.
            with quiet_stdout():
                while runs.completion(rid) is None:
                    time.sleep(0.05)
            wall = time.perf_counter() - t0
            s = status(runs, rid)
            assert s is not None and s.complete, s
            chunks = runs.chunks(rid)
            size = raw.stat().st_size
        finally:
            with quiet_stdout():
                rt.stop()
            memory.stop()
    return {
        "rows": rows,
        "file_mb": round(size / 1e6, 1),
        "end_to_end_s": round(wall, 2),
        "end_to_end_rows_per_s": round(rows / wall, 1),
        "stage_rows_per_s": stage_rates(s, chunks),
        "counts": s.counts,
        "chunks": s.run.chunks,
        "chunk_size": -(-rows // (s.run.chunks or 1)),
        "runtime": "aib dev --isolate (stages in worker processes)" if isolate else "aib dev",
        # This process's own peak, and the peak of its resident memory plus its children's
        # (the stages' worker processes with --isolate), sampled every 0.2 s.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_with_workers_mb": memory.peak_mb,
        "baseline_csv_module_rows_per_s": round(floor, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--chunk-size", type=int, help="PIPELINE_CHUNK_SIZE (default: as declared)")
    p.add_argument("--isolate", action="store_true", help="stages in worker processes")
    args = p.parse_args()
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        **run(args.rows, args.chunk_size, args.isolate),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("pipeline-isolate.json" if args.isolate else "pipeline.json")).write_text(
        json.dumps(result, indent=2) + "\n"
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
