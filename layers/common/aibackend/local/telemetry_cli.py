"""`aib logs FUNCTION [-f]` and `aib metrics`: what `aib dev`'s functions logged and measured."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from datetime import datetime
from typing import Any, TextIO

from aibackend.errors import ConfigError
from aibackend.local.logs import follow, log_folder, log_path, pretty, read_lines
from aibackend.local.metrics import aggregate, parse_since, samples
from aibackend.settings import PlatformSettings


def _known(settings: PlatformSettings) -> list[str]:
    folder = log_folder(settings.state_dir)
    return sorted(p.stem for p in folder.glob("*.log")) if folder.exists() else []


def _since(text: str) -> datetime:
    try:
        return parse_since(text)
    except ValueError as e:  # `aib: <what to type>`, not a traceback
        raise ConfigError(str(e)) from None


def cmd_logs(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    settings = PlatformSettings.from_env()
    path = log_path(settings.state_dir, args.function)
    if not path.exists() and not args.follow:
        known = ", ".join(_known(settings)) or "none yet: start `aib dev` and call a function"
        print(
            f"aib: no logs for {args.function!r} in {path.parent}; functions with logs: {known}",
            file=sys.stderr,
        )
        return 1
    since = _since(args.since) if args.since else None

    def show(line: Any) -> None:
        text = line.text if args.raw else pretty(line)
        if text is not None:
            print(text, file=out, flush=True)

    lines = list(read_lines(path, since))
    for line in lines[-args.lines :] if args.lines and not since else lines:
        show(line)
    if args.follow:
        try:
            for line in follow(path, threading.Event()):
                show(line)
        except KeyboardInterrupt:
            pass
    return 0


def cmd_metrics(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    settings = PlatformSettings.from_env()
    since = _since(args.since)
    series = aggregate(
        s
        for s in samples(settings.state_dir, args.function, since)
        if not args.name or s.name in args.name
    )
    if args.json:
        print(json.dumps([s.summary() for s in series], indent=2), file=out)
        return 0
    if not series:
        print(
            f"no metrics since {since:%Y-%m-%d %H:%M:%S} UTC; call a function under "
            "`aib dev`, or widen --since",
            file=sys.stderr,
        )
        return 1
    rows = [("FUNCTION", "METRIC", "DIMENSIONS", "UNIT", "N", "SUM", "P50", "P99", "MAX")]
    for s in series:
        d = s.summary()
        rows.append(
            (
                s.function,
                s.name,
                ",".join(f"{k}={v}" for k, v in s.dimensions) or "-",
                s.unit,
                str(d["samples"]),
                _num(d["sum"]),
                _num(d["p50"]),
                _num(d["p99"]),
                _num(d["max"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [
            c.ljust(w) if i < 4 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        print("  ".join(cells).rstrip(), file=out)
    return 0


def _num(v: float) -> str:
    return f"{v:,.0f}" if v == int(v) and abs(v) < 1e15 else f"{v:,.2f}"


def register(sub: Any) -> None:
    lg = sub.add_parser("logs", help="a function's log under `aib dev` (-f to follow)")
    lg.add_argument("function", help="the function's name, e.g. fraud_score")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    lg.add_argument("--since", help="from this long ago (15m, 2h, 1d) or an ISO 8601 time")
    lg.add_argument("-n", "--lines", type=int, default=50, help="last N lines (default 50; 0: all)")
    lg.add_argument("--raw", action="store_true", help="lines as written (JSON, EMF included)")
    lg.set_defaults(func=cmd_logs)

    mt = sub.add_parser(
        "metrics", help="metrics of `aib dev`'s functions (EMF and Lambda's per-invocation ones)"
    )
    mt.add_argument("function", nargs="*", help="only these functions (default: all)")
    mt.add_argument("--since", default="1h", help="window: 15m, 2h, 1d or an ISO time (default 1h)")
    mt.add_argument("--name", action="append", help="only this metric (repeatable)")
    mt.add_argument("--json", action="store_true", help="one JSON object per series")
    mt.set_defaults(func=cmd_metrics)
