"""`aib pipeline status [RUN] [--watch]`: where a pipeline run stands."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from aibackend.pipeline.runs import COUNTS, RunStatus, run_store, status
from aibackend.settings import PlatformSettings

BAR = 30


def render(s: RunStatus) -> str:
    """One status line: progress bar, chunks, counts per stage and elapsed time."""
    filled = round(s.progress * BAR)
    bar = "#" * filled + "-" * (BAR - filled)
    chunks = f"{s.chunks_done}/{s.run.chunks if s.run.chunks is not None else '?'} chunks"
    counts = "  ".join(f"{name} {s.counts.get(name, 0):,}" for name in COUNTS)
    state = "complete" if s.complete else "running"
    return f"[{bar}] {s.progress:4.0%} {chunks}  {counts}  {s.elapsed_s:.1f} s  {state}"


def cmd_status(args: argparse.Namespace) -> int:
    settings = PlatformSettings.from_env()
    runs = run_store(settings)
    wanted = args.run or runs.latest()
    if wanted is None:
        print("no pipeline runs yet; drop a file under raw/transactions/", file=sys.stderr)
        return 1
    return _watch(runs, wanted, args.watch, sys.stdout)


def _watch(runs: Any, wanted: str, watch: bool, out: TextIO, interval: float = 0.5) -> int:
    current = status(runs, wanted)
    if current is None:
        print(f"no pipeline run {wanted!r}", file=sys.stderr)
        return 1
    print(f"run {wanted}: s3://{current.run.bucket}/{current.run.key}", file=out)
    while watch and not current.complete:
        print("\r" + render(current), end="", file=out, flush=True)
        time.sleep(interval)
        current = status(runs, wanted) or current
    print(("\r" if watch else "") + render(current), file=out)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("pipeline", help="the transactions pipeline: run status")
    p_sub = p.add_subparsers(dest="pipeline_command", required=True)
    st = p_sub.add_parser("status", help="counts per stage of a run (the latest by default)")
    st.add_argument("run", nargs="?", help="run id (default: the most recently started run)")
    st.add_argument("--watch", action="store_true", help="show a progress bar until complete")
    st.set_defaults(func=cmd_status)
