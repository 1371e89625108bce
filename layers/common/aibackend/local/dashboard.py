"""The read model of `aib dev`'s monitoring dashboard: time series built from the local state.

Two sources, both in the state folder `aib dev` and `aib monitor run` write:
- the monitor's reports, `reports/<model>/<hour|day>-<start>.json` in the `monitoring` bucket
  (`aibackend.monitoring.service.MonitorReport`), one point per window: drift per column with
  its threshold and verdict, ROC AUC / precision / recall / label completeness, bias gaps and
  group selection rates; the score's quantiles come from the window's merged profile deltas
  (`profiles/<model>/...`, what the report judged), cached per report;
- the functions' log files (`aibackend.local.logs`): each invocation's `REPORT` line gives
  its duration and whether it failed (`aibackend.local.metrics.report_samples`), bucketed per
  minute into p50 / p99 and error counts; read incrementally (`InvocationLog`).

A model's point is what its report says (no statistic is recomputed); only the score quantiles
are read afresh, from the same sketches the report judged.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from aibackend.adapters import object_store
from aibackend.capture import BUCKET
from aibackend.local.logs import log_folder, parse_line
from aibackend.local.metrics import Sample, report_samples
from aibackend.monitoring.bias import Gap
from aibackend.monitoring.drift import ColumnDrift
from aibackend.monitoring.profiles import WindowKey
from aibackend.monitoring.service import REPORTS_PREFIX, MonitorReport, merge_window
from aibackend.ports import ObjectStore
from aibackend.settings import PlatformSettings, physical_name

Span = Literal["hour", "day"]
#: Score quantiles drawn per window (ranks).
SCORE_RANKS: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
#: What to run when a panel has nothing to draw.
HINT_REPORTS = (
    "no monitor reports yet: send traffic to `aib dev` (`aib simulate --scenario payments "
    "--rate 50 --duration 60`), then judge it with `aib monitor run --window hour --window day`"
)
HINT_TRAFFIC = (
    "no function invocations in this period: start `aib dev` and send requests "
    "(`aib simulate --scenario payments --rate 50 --duration 60`)"
)
_REPORT_NAME = re.compile(r"^(hour|day)-(\d{4}-\d{2}-\d{2}(?:T\d{2})?)\.json$")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowPoint(_Frozen):
    """One judged window: the x of every model series."""

    start: datetime
    end: datetime
    rows: int
    deltas: int
    baseline_version: int | None
    #: Why drift was not tested (no baseline profile), as the report says; None when it was.
    problem: str | None
    findings: list[str]


class DriftPoint(_Frozen):
    start: datetime
    test: str | None
    statistic: float | None
    threshold: float | None
    p_value: float | None
    drifted: bool


class ColumnSeries(_Frozen):
    """A feature's (or the prediction's) drift statistic over the windows."""

    column: str
    role: Literal["feature", "prediction"]
    points: list[DriftPoint]


class ScorePoint(_Frozen):
    start: datetime
    rows: int
    #: `"p5"`, `"p25"`, ... -> score; empty when the window has no score column.
    quantiles: dict[str, float]


class AccuracyPoint(_Frozen):
    start: datetime
    predictions: int
    labelled: int
    completeness: float
    roc_auc: float | None
    precision: float | None
    recall: float | None


class GapPoint(_Frozen):
    start: datetime
    value: float
    lower: float
    upper: float
    high_group: str
    low_group: str
    flagged: bool


class GroupRatePoint(_Frozen):
    start: datetime
    n: int
    selection_rate: float | None


class AttributeSeries(_Frozen):
    """One sensitive attribute: its gaps per metric and each group's selection rate."""

    attribute: str
    tolerance: float
    #: `demographic_parity`, `true_positive_rate`, `false_positive_rate` -> points.
    gaps: dict[str, list[GapPoint]]
    groups: dict[str, list[GroupRatePoint]]


class ModelSeries(_Frozen):
    model: str
    span: Span
    windows: list[WindowPoint]
    drift: list[ColumnSeries]
    scores: list[ScorePoint]
    accuracy: list[AccuracyPoint]
    bias: list[AttributeSeries]


class MinutePoint(_Frozen):
    start: datetime
    invocations: int
    errors: int
    p50_ms: float
    p99_ms: float


class FunctionSeries(_Frozen):
    function: str
    invocations: int
    errors: int
    points: list[MinutePoint]


class DashboardData(_Frozen):
    """`GET /dashboard/data.json`."""

    generated_at: datetime
    since: datetime
    hours: int
    #: Models with reports, to choose from.
    models: list[str]
    model: ModelSeries | None
    functions: list[FunctionSeries]
    #: Per panel family (`monitoring`, `functions`), what to run when it has nothing to show.
    hints: dict[str, str]
    #: Reports that could not be read, each with the reason.
    problems: list[str]


@dataclass(frozen=True)
class Query:
    model: str | None = None
    hours: int = 24
    span: Span = "hour"


# -- reports -----------------------------------------------------------------------------------


def monitoring_store(settings: PlatformSettings) -> ObjectStore:
    return object_store(physical_name("bucket", BUCKET), settings)


def monitored_models(store: ObjectStore) -> list[str]:
    """Models that have at least one report."""
    names = {
        info.key[len(REPORTS_PREFIX) :].split("/", 1)[0] for info in store.list(REPORTS_PREFIX)
    }
    return sorted(n for n in names if n)


def window_of(name: str) -> WindowKey | None:
    """The window a report's file name stands for (`hour-2026-11-27T10.json`), else None."""
    m = _REPORT_NAME.match(name)
    if m is None:
        return None
    span: Span = "hour" if m.group(1) == "hour" else "day"
    if (span == "hour") != ("T" in m.group(2)):
        return None
    start = datetime.strptime(m.group(2), "%Y-%m-%dT%H" if span == "hour" else "%Y-%m-%d")
    return WindowKey(start=start.replace(tzinfo=UTC), span=span)


#: Parsed reports by (key, etag): a refresh re-reads only reports rewritten since the last.
ReportCache = dict[tuple[str, str], MonitorReport]


def load_reports(
    store: ObjectStore,
    model: str,
    span: Span,
    since: datetime,
    cache: ReportCache | None = None,
) -> tuple[list[MonitorReport], list[str]]:
    """The model's reports of `span` windows that end after `since`, oldest first, and a
    line per report that does not parse (written by another version): skipped, named.
    `cache` is updated to hold exactly the reports returned."""
    prefix = f"{REPORTS_PREFIX}{model}/"
    found: list[tuple[datetime, str, str]] = []
    for info in store.list(prefix):
        key = window_of(info.key[len(prefix) :])
        if key is not None and key.span == span and key.end > since:
            found.append((key.start, info.key, info.etag))
    before = dict(cache or {})
    reports: list[MonitorReport] = []
    problems: list[str] = []
    kept: ReportCache = {}
    for _, rkey, etag in sorted(found):
        report = before.get((rkey, etag))
        if report is None:
            try:
                raw = json.loads(store.get(rkey))
                report = MonitorReport.model_validate(without_computed(MonitorReport, raw))
            except (ValueError, ValidationError) as e:
                problems.append(f"{rkey} skipped: not a report this version reads ({e})")
                continue
        kept[(rkey, etag)] = report
        reports.append(report)
    if cache is not None:
        cache.clear()
        cache.update(kept)
    return reports, problems


def without_computed(cls: type[BaseModel], data: Any) -> Any:
    """`data` (a model's JSON) less the computed fields its dump added at any depth (a
    `ColumnDrift`'s `drifted`, a `BiasReport`'s `detected`): the models forbid extra keys, so
    a dumped report validates only without them."""
    if not isinstance(data, dict):
        return data
    return {
        k: _strip(cls.model_fields[k].annotation, v) if k in cls.model_fields else v
        for k, v in data.items()
        if k not in cls.model_computed_fields
    }


def _strip(tp: Any, value: Any) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return without_computed(tp, value)
    if origin is Annotated:
        return _strip(args[0], value)
    if origin in (Union, UnionType):
        if value is None:
            return None
        members = [a for a in args if a is not type(None)]
        return _strip(members[0], value) if len(members) == 1 else value
    if origin in (list, tuple) and isinstance(value, list) and args:
        return [_strip(args[0], v) for v in value]
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {k: _strip(args[1], v) for k, v in value.items()}
    return value


class ScoreQuantiles:
    """Score quantiles of a report's window from its profile deltas, computed once per report
    (keyed by report and generation time: a window judged again is merged again)."""

    def __init__(self, store: ObjectStore, maxsize: int = 512) -> None:
        self.store = store
        self.maxsize = maxsize
        self._cache: OrderedDict[tuple[str, datetime], dict[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, report: MonitorReport) -> dict[str, float]:
        key = (report.report_key, report.generated_at)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        got = self._compute(report)
        with self._lock:
            self._cache[key] = got
            while len(self._cache) > self.maxsize:
                self._cache.popitem(last=False)
        return got

    def _compute(self, report: MonitorReport) -> dict[str, float]:
        w = report.window
        profile = merge_window(self.store, report.model, WindowKey(start=w.start, span=w.span))
        if profile.profile is None or profile.profile.score is None:
            return {}
        col = profile.profile.score
        if col.count == 0:
            return {}
        values = col.sketch.quantiles(np.asarray(SCORE_RANKS))
        return {rank_label(r): float(v) for r, v in zip(SCORE_RANKS, values, strict=True)}


def rank_label(rank: float) -> str:
    """0.05 -> "p5", 0.5 -> "p50"."""
    return f"p{round(rank * 100):d}"


def model_series(
    model: str,
    span: Span,
    reports: Sequence[MonitorReport],
    quantiles: ScoreQuantiles,
) -> ModelSeries:
    return ModelSeries(
        model=model,
        span=span,
        windows=[_window_point(r) for r in reports],
        drift=drift_series(reports),
        scores=[
            ScorePoint(start=r.window.start, rows=r.rows, quantiles=quantiles(r)) for r in reports
        ],
        accuracy=[_accuracy_point(r) for r in reports],
        bias=bias_series(reports),
    )


def _window_point(r: MonitorReport) -> WindowPoint:
    return WindowPoint(
        start=r.window.start,
        end=r.window.end,
        rows=r.rows,
        deltas=r.deltas,
        baseline_version=r.baseline.version,
        problem=r.baseline.problem,
        findings=[str(f["finding"]) for f in r.findings],
    )


def _accuracy_point(r: MonitorReport) -> AccuracyPoint:
    a = r.accuracy
    return AccuracyPoint(
        start=r.window.start,
        predictions=a.predictions,
        labelled=a.labelled,
        completeness=a.completeness,
        roc_auc=a.roc_auc,
        precision=a.precision,
        recall=a.recall,
    )


def drift_series(reports: Sequence[MonitorReport]) -> list[ColumnSeries]:
    """One series per column in the order the reports list them (features, then prediction);
    a window without drift (no baseline profile, no rows) adds no point."""
    points: dict[tuple[str, str], list[DriftPoint]] = {}
    for r in reports:
        if r.drift is None:
            continue
        for role, cols in (("feature", r.drift.features), ("prediction", r.drift.prediction)):
            for c in cols:
                points.setdefault((role, c.column), []).append(_drift_point(r.window.start, c))
    return [
        ColumnSeries(column=column, role="feature" if role == "feature" else "prediction", points=p)
        for (role, column), p in points.items()
    ]


def _drift_point(start: datetime, c: ColumnDrift) -> DriftPoint:
    return DriftPoint(
        start=start,
        test=c.test,
        statistic=_finite(c.statistic),
        threshold=c.threshold,
        p_value=_finite(c.p_value),
        drifted=c.drifted,
    )


def bias_series(reports: Sequence[MonitorReport]) -> list[AttributeSeries]:
    """Per sensitive attribute, each gap and each group's selection rate over the windows."""
    gaps: dict[str, dict[str, list[GapPoint]]] = {}
    groups: dict[str, dict[str, list[GroupRatePoint]]] = {}
    tolerance: dict[str, float] = {}
    for r in reports:
        if r.bias is None:
            continue
        for attr in r.bias.attributes:
            tolerance[attr.attribute] = r.bias.config.tolerance
            by_metric = gaps.setdefault(attr.attribute, {})
            for gap in (
                attr.demographic_parity_difference,
                attr.true_positive_rate_difference,
                attr.false_positive_rate_difference,
            ):
                if gap is not None:
                    by_metric.setdefault(gap.metric, []).append(_gap_point(r.window.start, gap))
            by_group = groups.setdefault(attr.attribute, {})
            for g in attr.groups:
                by_group.setdefault(g.group, []).append(
                    GroupRatePoint(
                        start=r.window.start, n=g.n, selection_rate=g.selection_rate.value
                    )
                )
    return [
        AttributeSeries(
            attribute=a,
            tolerance=tolerance[a],
            gaps=gaps[a],
            groups=dict(sorted(groups[a].items())),
        )
        for a in sorted(tolerance)
    ]


def _gap_point(start: datetime, g: Gap) -> GapPoint:
    return GapPoint(
        start=start,
        value=g.value,
        lower=g.lower,
        upper=g.upper,
        high_group=g.high_group,
        low_group=g.low_group,
        flagged=g.flagged,
    )


def _finite(v: float | None) -> float | None:
    """JSON has no infinity or NaN: such a statistic is drawn as a gap."""
    return v if v is not None and math.isfinite(v) else None


# -- functions ---------------------------------------------------------------------------------

#: What marks the line Lambda's service writes after each invocation.
_REPORT_MARK = "\tREPORT RequestId: "


@dataclass
class _Minutes:
    """Per minute: the durations (ms) of the invocations that ended in it, and failures."""

    durations: dict[datetime, list[float]] = field(default_factory=dict)
    errors: dict[datetime, int] = field(default_factory=dict)

    def add(self, found: Iterable[Sample]) -> None:
        for s in found:
            minute = s.at.astimezone(UTC).replace(second=0, microsecond=0)
            if s.name == "Duration":
                self.durations.setdefault(minute, []).append(s.value)
            elif s.name == "Errors" and s.value:
                self.errors[minute] = self.errors.get(minute, 0) + 1


@dataclass
class _File:
    inode: int
    offset: int = 0
    minutes: _Minutes = field(default_factory=_Minutes)


class InvocationLog:
    """Invocations per function and minute from the functions' log files, read incrementally:
    each call reads only the bytes appended since the last one (a file replaced by rotation is
    read again from its start), so a page refreshing every few seconds does not re-read
    megabytes of logs. Only `REPORT` lines are parsed."""

    def __init__(self, state_dir: Path) -> None:
        self.folder = log_folder(state_dir)
        self._files: dict[Path, _File] = {}
        self._lock = threading.Lock()

    def series(self, since: datetime) -> list[FunctionSeries]:
        with self._lock:
            paths = sorted(self.folder.glob("*.log*")) if self.folder.exists() else []
            live = {p for p in paths if p.name.endswith((".log", ".log.1"))}
            for gone in set(self._files) - live:
                del self._files[gone]
            for path in sorted(live):
                self._refresh(path)
            merged: dict[str, _Minutes] = {}
            for path, f in self._files.items():
                into = merged.setdefault(_function_of(path), _Minutes())
                for m, v in f.minutes.durations.items():
                    into.durations.setdefault(m, []).extend(v)
                for m, n in f.minutes.errors.items():
                    into.errors[m] = into.errors.get(m, 0) + n
        start = since.astimezone(UTC).replace(second=0, microsecond=0)
        out = [_function_series(name, m, start) for name, m in sorted(merged.items())]
        return [f for f in out if f.points]

    def _refresh(self, path: Path) -> None:
        try:
            st = path.stat()
        except FileNotFoundError:
            self._files.pop(path, None)
            return
        known = self._files.get(path)
        if known is None or known.inode != st.st_ino or st.st_size < known.offset:
            known = self._files[path] = _File(inode=st.st_ino)
        if st.st_size == known.offset:
            return
        with path.open("rb") as fh:
            fh.seek(known.offset)
            chunk = fh.read(st.st_size - known.offset)
        whole = chunk[: chunk.rfind(b"\n") + 1]  # a line being written is read next time
        known.offset += len(whole)
        function = _function_of(path)
        for raw in whole.decode("utf-8", errors="replace").splitlines():
            if _REPORT_MARK in raw and (line := parse_line(raw)) is not None:
                known.minutes.add(report_samples(function, line))


def _function_of(path: Path) -> str:
    return path.name.removesuffix(".1").removesuffix(".log")


def _function_series(function: str, m: _Minutes, start: datetime) -> FunctionSeries:
    points = [
        _minute_point(minute, values, m.errors.get(minute, 0))
        for minute, values in sorted(m.durations.items())
        if minute >= start
    ]
    return FunctionSeries(
        function=function,
        invocations=sum(p.invocations for p in points),
        errors=sum(p.errors for p in points),
        points=points,
    )


def _minute_point(start: datetime, values: list[float], errors: int) -> MinutePoint:
    ordered = sorted(values)
    return MinutePoint(
        start=start,
        invocations=len(ordered),
        errors=errors,
        p50_ms=_nearest_rank(ordered, 50),
        p99_ms=_nearest_rank(ordered, 99),
    )


def _nearest_rank(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, as `aib metrics` (`aibackend.local.metrics.Series`)."""
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


# -- the whole page ----------------------------------------------------------------------------


class Dashboard:
    """The read model over one state folder (one per gateway; keeps the score cache)."""

    def __init__(self, settings: PlatformSettings) -> None:
        self.state_dir: Path = settings.state_dir
        self.store = monitoring_store(settings)
        self.quantiles = ScoreQuantiles(self.store)
        self.invocations = InvocationLog(settings.state_dir)
        self._reports: dict[tuple[str, Span], ReportCache] = {}
        self._lock = threading.Lock()

    def data(self, query: Query, now: datetime | None = None) -> DashboardData:
        at = now or datetime.now(UTC)
        since = at - timedelta(hours=query.hours)
        models = monitored_models(self.store)
        chosen = query.model if query.model is not None else (models[0] if models else None)
        series = None
        problems: list[str] = []
        if chosen is not None:
            with self._lock:  # one refresh at a time updates a model's cache
                cache = self._reports.setdefault((chosen, query.span), {})
                reports, problems = load_reports(self.store, chosen, query.span, since, cache)
            series = model_series(chosen, query.span, reports, self.quantiles)
        functions = self.invocations.series(since)
        hints: dict[str, str] = {}
        if series is None or not series.windows:
            hints["monitoring"] = HINT_REPORTS
        if not functions:
            hints["functions"] = HINT_TRAFFIC
        return DashboardData(
            generated_at=at,
            since=since,
            hours=query.hours,
            models=models,
            model=series,
            functions=functions,
            hints=hints,
            problems=problems,
        )
