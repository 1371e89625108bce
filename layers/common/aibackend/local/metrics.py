"""`aib metrics`: the metrics of `aib dev`'s functions, read back from their log files.

On AWS, CloudWatch turns two things in a function's log into metrics: the Embedded Metric
Format documents Powertools `Metrics` prints (our latency, predictions, rows ...), and the
service's own per-invocation figures (`Invocations`, `Errors`, `Duration`). Locally both are
in the function's log file (`aibackend.local.logs`): EMF documents as JSON lines, the
service's figures as `REPORT` lines. This module reads them and aggregates per function,
metric and dimension set: sample count, sum, min, max and exact percentiles.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aibackend.local.logs import LogLine, log_folder, read_lines

_REPORT = re.compile(
    r"^REPORT RequestId: \S+\tDuration: ([0-9.]+) ms(\tInit Duration: [0-9.]+ ms)?"
)


@dataclass(frozen=True)
class Sample:
    function: str
    name: str
    unit: str
    dimensions: tuple[tuple[str, str], ...]
    value: float
    at: datetime


@dataclass
class Series:
    """Every sample of one (function, metric, dimensions) in the window."""

    function: str
    name: str
    unit: str
    dimensions: tuple[tuple[str, str], ...]
    values: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        """Exact percentile by the nearest-rank method (what CloudWatch's pNN approximates)."""
        ordered = sorted(self.values)
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]

    def summary(self) -> dict[str, Any]:
        v = self.values
        return {
            "function": self.function,
            "metric": self.name,
            "unit": self.unit,
            "dimensions": dict(self.dimensions),
            "samples": len(v),
            "sum": sum(v),
            "min": min(v),
            "max": max(v),
            "p50": self.percentile(50),
            "p90": self.percentile(90),
            "p99": self.percentile(99),
        }


def emf_samples(function: str, line: LogLine) -> Iterator[Sample]:
    """The samples of one EMF document (nothing for any other line). Dimension values come
    from the document's top level; `service` (the function itself here) is left out."""
    doc = line.json
    if doc is None or not isinstance(doc.get("_aws"), dict):
        return
    for directive in doc["_aws"].get("CloudWatchMetrics", []):
        names = {k for dims in directive.get("Dimensions", []) for k in dims} - {"service"}
        dims = tuple(sorted((k, str(doc[k])) for k in names if k in doc))
        for metric in directive.get("Metrics", []):
            raw = doc.get(metric.get("Name"))
            values = raw if isinstance(raw, list) else [raw]
            for v in values:
                if isinstance(v, int | float) and not isinstance(v, bool):
                    unit = metric.get("Unit", "None")
                    yield Sample(function, metric["Name"], unit, dims, float(v), line.at)


def report_samples(function: str, line: LogLine) -> Iterator[Sample]:
    """Lambda's service metrics from a REPORT line: Invocations, Errors, ColdStarts, Duration."""
    m = _REPORT.match(line.text)
    if m is None:
        return
    failed = "\tStatus: error" in line.text
    yield Sample(function, "Invocations", "Count", (), 1.0, line.at)
    yield Sample(function, "Errors", "Count", (), 1.0 if failed else 0.0, line.at)
    yield Sample(function, "ColdStarts", "Count", (), 1.0 if m.group(2) else 0.0, line.at)
    yield Sample(function, "Duration", "Milliseconds", (), float(m.group(1)), line.at)


def samples(
    state_dir: Path, functions: Iterable[str] = (), since: datetime | None = None
) -> Iterator[Sample]:
    wanted = set(functions)
    folder = log_folder(state_dir)
    for path in sorted(folder.glob("*.log")) if folder.exists() else []:
        function = path.stem
        if wanted and function not in wanted:
            continue
        for line in read_lines(path, since):
            yield from emf_samples(function, line)
            yield from report_samples(function, line)


def aggregate(found: Iterable[Sample]) -> list[Series]:
    series: dict[tuple[str, str, tuple[tuple[str, str], ...]], Series] = {}
    for s in found:
        key = (s.function, s.name, s.dimensions)
        if key not in series:
            series[key] = Series(s.function, s.name, s.unit, s.dimensions)
        series[key].values.append(s.value)
    return [series[k] for k in sorted(series)]


_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`15m`, `2h`, `1d`, `30s` before now, or an ISO 8601 time (UTC when it has no offset)."""
    m = _DURATION.match(text.strip())
    if m:
        delta = timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        return (now or datetime.now(UTC)) - delta
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give a duration such as 15m, 2h, 1d or an ISO 8601 time"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)
