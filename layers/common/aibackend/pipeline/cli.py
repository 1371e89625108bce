"""`aib pipeline status [RUN] [--watch]`: where a pipeline run stands; `aib pipeline runs
[--limit N]`: the recent runs, a line each; `aib pipeline report [--date YYYY-MM-DD]`: the daily
report of a UTC day, on demand."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from aibackend.argtypes import positive_int
from aibackend.pipeline.runs import COUNTS, RunStatus, run_store, status
from aibackend.settings import PlatformSettings

if TYPE_CHECKING:  # the report pulls in the scoring stack: imported when asked for
    from aibackend.pipeline.report import DailyReport, Totals

BAR = 30


def render(s: RunStatus) -> str:
    """One status line: progress bar, chunks, counts per stage and elapsed time."""
    filled = round(s.progress * BAR)
    bar = "#" * filled + "-" * (BAR - filled)
    chunks = f"{s.chunks_done}/{s.run.chunks if s.run.chunks is not None else '?'} chunks"
    counts = "  ".join(f"{name} {s.counts.get(name, 0):,}" for name in COUNTS)
    return f"[{bar}] {s.progress:4.0%} {chunks}  {counts}  {s.elapsed_s:.1f} s  {_state(s)}"


def _phase(s: RunStatus) -> str:
    """`running`, `complete` (every chunk done, not yet settled), or how it completed."""
    if s.completed_at is None:
        return "complete" if s.complete else "running"
    return s.state


def _state(s: RunStatus) -> str:
    if s.completed_at is None:
        return _phase(s)
    return f"{s.state}, report {s.report_key}; complete"


def cmd_status(args: argparse.Namespace) -> int:
    settings = PlatformSettings.from_env()
    runs = run_store(settings)
    wanted = args.run or runs.latest()
    if wanted is None:
        print("no pipeline runs yet; drop a file under raw/transactions/", file=sys.stderr)
        return 1
    return _watch(runs, wanted, args.watch, sys.stdout)


def cmd_runs(args: argparse.Namespace) -> int:
    runs = run_store(PlatformSettings.from_env())
    ids = runs.recent(args.limit)
    if not ids:
        print("no pipeline runs yet; drop a file under raw/transactions/", file=sys.stderr)
        return 1
    for rid in ids:
        s = status(runs, rid)
        if s is not None:
            print(run_line(s))
    print(f"details: aib pipeline status RUN ({len(ids)} most recent shown)", file=sys.stderr)
    return 0


def run_line(s: RunStatus) -> str:
    """One run: id, start, state, key and the counts that say how it went."""
    state = _phase(s)
    counts = "  ".join(f"{n} {s.counts.get(n, 0):,}" for n in ("received", "stored", "quarantined"))
    failed = s.counts.get("failed", 0)
    tail = f"  failed {failed:,}" if failed else ""
    started = s.run.started.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{s.run.run_id}  {started}  {state:<9}  {s.run.key}  {counts}{tail}"


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
    if current.run.failure is not None:
        print(f"ingest failed: {current.run.failure.reason}", file=out)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from aibackend.adapters import event_bus, object_store
    from aibackend.pipeline.report import parse_day, previous_day, publish_daily

    settings = PlatformSettings.from_env()
    try:
        day = parse_day(args.date) if args.date else previous_day(datetime.now(UTC))
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return 2
    store = object_store(BUCKET, settings)
    done = publish_daily(store, event_bus(settings), day)
    print(f"{done.key} in {BUCKET} ({len(done.report.run_ids)} run(s))")
    print(report_table(done.report))
    return 0


BUCKET = "pipeline-data"
_COLUMNS = (
    ("volume", 9),
    ("amount EUR", 15),
    ("high risk", 9),
    ("fraud rate", 10),
    ("mean score", 10),
    ("quarantined", 11),
    ("q. rate", 8),
)


def report_table(report: DailyReport) -> str:
    """The day's totals and each merchant category's, one line each."""
    width = max([len("total"), *map(len, report.by_merchant_category)])
    head = f"{'category':<{width}}  " + "  ".join(f"{n:>{w}}" for n, w in _COLUMNS)
    lines = [head]
    for name, t in [*report.by_merchant_category.items(), ("total", report.totals)]:
        lines.append(f"{name:<{width}}  " + "  ".join(_cells(t)))
    if report.undated_quarantined:
        lines.append(f"({report.undated_quarantined:,} quarantined rows had no readable date)")
    return "\n".join(lines)


def _cells(t: Totals) -> list[str]:
    score = "-" if t.mean_score is None else f"{t.mean_score:.4f}"
    values = (
        f"{t.volume:,}",
        f"{t.amount_eur:,.2f}",
        f"{t.high_risk:,}",
        f"{t.fraud_rate:.2%}",
        score,
        f"{t.quarantined:,}",
        f"{t.quarantine_rate:.2%}",
    )
    return [f"{v:>{w}}" for v, (_, w) in zip(values, _COLUMNS, strict=True)]


def register(sub: Any) -> None:
    p = sub.add_parser("pipeline", help="the transactions pipeline: run status, daily report")
    p_sub = p.add_subparsers(dest="pipeline_command", required=True)
    st = p_sub.add_parser("status", help="counts per stage of a run (the latest by default)")
    st.add_argument("run", nargs="?", help="run id (default: the most recently started run)")
    st.add_argument("--watch", action="store_true", help="show a progress bar until complete")
    st.set_defaults(func=cmd_status)
    ru = p_sub.add_parser("runs", help="the most recently started runs, one line each")
    ru.add_argument(
        "--limit", type=positive_int, default=20, help="how many (default 20, at most 100)"
    )
    ru.set_defaults(func=cmd_runs)
    rp = p_sub.add_parser(
        "report",
        help="aggregate a UTC day into reports/daily/<day>.json and publish Pipeline Run Completed",
    )
    rp.add_argument("--date", help="the UTC day, YYYY-MM-DD (default: yesterday, UTC)")
    rp.set_defaults(func=cmd_report)
