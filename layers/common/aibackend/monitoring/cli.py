"""`aib monitor run [--model M] [--window W ...]`: run the model monitor now, in this process,
on the local state (what the hourly `monitor_models` function does on its schedule)."""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aibackend.capture import load_capture
from aibackend.catalog import default_functions_dir
from aibackend.monitoring.config import monitored_models
from aibackend.monitoring.service import MonitorReport
from aibackend.settings import PlatformSettings


def summary(r: MonitorReport) -> str:
    """One line per judged window: rows, drift, accuracy, bias, findings."""
    parts = [f"{r.model} {r.window.span} {r.window.start:%Y-%m-%d %H:00}: {r.rows:,} rows"]
    if r.drift is not None:
        parts.append(
            f"drift share {r.drift.share:.2f}"
            + (f" ({', '.join(r.drift.drifted_features)})" if r.drift.drifted_features else "")
        )
    elif r.baseline.problem:
        parts.append(f"drift not tested: {r.baseline.problem}")
    a = r.accuracy
    auc = "n/a" if a.roc_auc is None else f"{a.roc_auc:.3f}"
    parts.append(f"labels {a.labelled}/{a.predictions} ({a.completeness:.0%}), AUC {auc}")
    if r.bias is not None:
        parts.append("bias detected" if r.bias.detected else "no bias flagged")
    new = [f"{f['detail_type']} ({f['finding']})" for f in r.findings if f["new"]]
    parts.append(f"published: {', '.join(new)}" if new else "nothing new published")
    return "; ".join(parts) + f" -> {r.report_key}"


def cmd_run(args: argparse.Namespace) -> int:
    from aibackend.monitoring.runner import run_monitor

    if args.state_dir:
        settings = PlatformSettings(state_dir=Path(args.state_dir))
    else:
        settings = PlatformSettings.from_env()
    functions = Path(args.functions) if args.functions else default_functions_dir()
    monitored = monitored_models(functions, load_capture(functions))
    try:
        reports = run_monitor(
            models=args.model,
            windows=args.window,
            at=datetime.now(UTC),
            cause=f"aib-monitor-run-{uuid.uuid4()}",
            monitored=monitored,
            settings=settings,
        )
    except ValueError as e:
        print(f"aib monitor run: {e}", file=sys.stderr)
        return 2
    for r in reports:
        print(summary(r))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mon = sub.add_parser("monitor", help="model monitoring: drift, accuracy, bias")
    mon_sub = mon.add_subparsers(dest="monitor_command", required=True)
    run = mon_sub.add_parser(
        "run",
        help="judge windows now: report, findings on the bus (default: the last full hour "
        "and its day so far, as the hourly schedule)",
    )
    run.add_argument(
        "--model", action="append", help="a monitored model (repeatable; default: all)"
    )
    run.add_argument(
        "--window",
        action="append",
        help="hour, day (the current ones), hour:YYYY-MM-DDTHH or day:YYYY-MM-DD, UTC (repeatable)",
    )
    run.add_argument("--functions", help="functions folder (default: ./functions)")
    run.add_argument("--state-dir", help="local state folder (default: $AIB_STATE_DIR or .aib)")
    run.set_defaults(func=cmd_run)
