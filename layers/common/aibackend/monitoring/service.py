"""The model monitor: for one model and one window (an hour, or a day so far), merge the
window's profile deltas, test drift against the production version's baseline profile, compute
accuracy from the label ledger and bias from its per-group counts, write the report, and
publish each finding once.

Inputs and outputs, all in the `monitoring` bucket unless said otherwise:
- deltas: `profiles/<model>/<YYYY-MM-DD>/<HH>/<batch id>.bundle` (written by `monitor_capture`:
  one delta per capture message, bundled per consumer batch) or `<id>.bin` (one delta);
- baseline: `profile.bin` of the production version, in the model store;
- labels: the model's ledger (`aibackend.monitoring.ledger`);
- report: `reports/<model>/<hour|day>-<start>.json`;
- findings: `Model Drift Detected`, `Model Performance Degraded`, `Bias Detected` on the platform
  bus; `findings/<model>/<window>/<finding>.json` records each published one, so a window run
  again publishes nothing twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from aibackend.contracts.monitoring import (
    BiasDetectedV1,
    DriftedColumn,
    Finding,
    ModelDriftDetectedV1,
    ModelPerformanceDegradedV1,
    MonitorWindow,
)
from aibackend.errors import ObjectNotFoundError
from aibackend.models.card import PROFILE_FILE
from aibackend.monitoring.accuracy import AccuracyReport, accuracy_report
from aibackend.monitoring.bias import BiasReport, bias_report
from aibackend.monitoring.config import MonitorSettings
from aibackend.monitoring.confusion import ConfusionTable
from aibackend.monitoring.drift import ColumnDrift, DriftReport, detect_drift
from aibackend.monitoring.ingest import BUNDLE_SUFFIX, PROFILES_PREFIX, add_bundle
from aibackend.monitoring.labels import LabelStore
from aibackend.monitoring.profiles import Profile, Span, Window, WindowKey
from aibackend.ports import EventBus, ModelRegistry, ObjectStore, PutEvent

SOURCE = "aib.monitoring"
REPORTS_PREFIX = "reports/"
FINDINGS_PREFIX = "findings/"


class Baseline(BaseModel):
    """The production version a window is judged against, and whether it has a profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int | None
    profile: bool
    #: Why drift was not tested, and how to fix it; None when it was.
    problem: str | None = None


class MonitorReport(BaseModel):
    """`reports/<model>/<window>.json`: what the dashboard reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    window: MonitorWindow
    report_key: str
    generated_at: datetime
    baseline: Baseline
    rows: int
    deltas: int
    drift: DriftReport | None
    accuracy: AccuracyReport
    bias: BiasReport | None
    #: Findings of this window, each `{"detail_type", "finding", "event_id", "new"}`.
    findings: list[dict[str, Any]]


@dataclass(frozen=True)
class Ports:
    """What the monitor reads and writes (real adapters in the function, fakes in tests)."""

    store: ObjectStore
    models: ObjectStore
    registry: ModelRegistry
    bus: EventBus


def window_id(key: WindowKey) -> str:
    """`hour-2026-11-27T10` or `day-2026-11-27`: the window's part of report and finding keys."""
    if key.span == "hour":
        return f"hour-{key.start:%Y-%m-%dT%H}"
    return f"day-{key.start:%Y-%m-%d}"


def report_key(model: str, key: WindowKey) -> str:
    return f"{REPORTS_PREFIX}{model}/{window_id(key)}.json"


_WINDOW = re.compile(r"^(hour|day)(?::(\d{4}-\d{2}-\d{2}(?:T\d{2})?))?$")


def parse_window(text: str, now: datetime) -> WindowKey:
    """`hour` / `day` (the ones containing `now`), `hour:YYYY-MM-DDTHH`, `day:YYYY-MM-DD`."""
    m = _WINDOW.fullmatch(text.strip())
    if m is None:
        raise ValueError(
            f"window {text!r}: expected hour, day, hour:YYYY-MM-DDTHH or day:YYYY-MM-DD (UTC)"
        )
    span: Span = "hour" if m.group(1) == "hour" else "day"
    if m.group(2) is None:
        return WindowKey.for_time(now, span)
    at = m.group(2)
    if (span == "hour") != ("T" in at):
        raise ValueError(f"window {text!r}: an hour is YYYY-MM-DDTHH, a day YYYY-MM-DD")
    start = datetime.strptime(at, "%Y-%m-%dT%H" if span == "hour" else "%Y-%m-%d")
    return WindowKey(start=start.replace(tzinfo=UTC), span=span)


def scheduled_windows(at: datetime) -> list[WindowKey]:
    """What an hourly run at `at` judges: the hour that just ended, and its day so far."""
    hour = WindowKey.for_time(at - timedelta(hours=1), "hour")
    return [hour, WindowKey.for_time(hour.start, "day")]


def merge_window(store: ObjectStore, model: str, key: WindowKey) -> Window:
    """The window's deltas merged, each counted once."""
    day = f"{PROFILES_PREFIX}{model}/{key.start:%Y-%m-%d}/"
    prefix = day + f"{key.start:%H}/" if key.span == "hour" else day
    window = Window(key=key)
    for info in store.list(prefix):
        if info.key.endswith(".bin"):
            window.add(Profile.from_bytes(store.get(info.key)))
        elif info.key.endswith(BUNDLE_SUFFIX):
            add_bundle(window, store.get(info.key))
    return window


def load_baseline(
    ports: Ports, model: str, pinned: int | None = None
) -> tuple[Baseline, Profile | None]:
    """The baseline profile of `pinned` (the version deployed with the monitor), else of the
    registry's production version."""
    production = (
        ports.registry.get(model, pinned)
        if pinned is not None
        else ports.registry.production(model)
    )
    if production is None:
        return Baseline(
            version=None,
            profile=False,
            problem=f"{model} has no production version: train and promote one "
            f"(`aib train {model}`)",
        ), None
    try:
        data = ports.models.get(production.prefix + PROFILE_FILE)
    except ObjectNotFoundError:
        return Baseline(
            version=production.version,
            profile=False,
            problem=f"{model} v{production.version} has no baseline profile ({PROFILE_FILE}: "
            "trained before training wrote one); drift is not tested until a version trained "
            f"since is in production: retrain with `aib train {model}` and promote it",
        ), None
    return Baseline(version=production.version, profile=True), Profile.from_bytes(data)


def monitor_window(
    ports: Ports,
    ledger: LabelStore,
    model: str,
    key: WindowKey,
    settings: MonitorSettings,
    *,
    cause: str,
    now: datetime,
    pinned: int | None = None,
) -> MonitorReport:
    """Judge one window of one model; write its report; publish its new findings."""
    window = merge_window(ports.store, model, key)
    baseline, reference = load_baseline(ports, model, pinned)
    drift = None
    if reference is not None and window.profile is not None:
        drift = detect_drift(reference, window.profile, settings.drift_config())
    accuracy = accuracy_report(ledger.window(key.start, key.end))
    table = _sensitive(accuracy.confusion, settings.sensitive_attributes)
    bias = bias_report(table, settings.bias_config()) if table.groups else None
    mw = MonitorWindow(span=key.span, start=key.start, end=key.end)
    rkey = report_key(model, key)
    found = _findings(model, mw, baseline, window.rows, drift, accuracy, bias, settings, rkey)
    published = _publish(ports, model, key, found, cause)
    report = MonitorReport(
        model=model,
        window=mw,
        report_key=rkey,
        generated_at=now,
        baseline=baseline,
        rows=window.rows,
        deltas=len(window.delta_ids),
        drift=drift,
        accuracy=accuracy,
        bias=bias,
        findings=published,
    )
    ports.store.put(
        rkey, report.model_dump_json(indent=1).encode(), content_type="application/json"
    )
    return report


def _sensitive(table: ConfusionTable, attributes: Sequence[str]) -> ConfusionTable:
    return ConfusionTable(
        overall=table.overall, groups={a: g for a, g in table.groups.items() if a in attributes}
    )


def _findings(
    model: str,
    window: MonitorWindow,
    baseline: Baseline,
    rows: int,
    drift: DriftReport | None,
    accuracy: AccuracyReport,
    bias: BiasReport | None,
    settings: MonitorSettings,
    rkey: str,
) -> list[tuple[str, Finding]]:
    """(finding name, detail) of every threshold this window crossed."""
    if baseline.version is None:
        return []
    common: dict[str, Any] = {
        "model": model,
        "baseline_version": baseline.version,
        "window": window,
        "report_key": rkey,
        # Placeholders until publishing sets the run's event id.
        "correlation_id": "-",
        "caused_by": "-",
    }
    out: list[tuple[str, Finding]] = []
    if drift is not None:
        out.extend(_drift_findings(drift, rows, common))
    auc = accuracy.roc_auc
    if auc is not None and accuracy.labelled >= settings.min_labels and auc < settings.min_roc_auc:
        out.append(
            (
                "roc_auc",
                ModelPerformanceDegradedV1(
                    **common,
                    test="roc_auc",
                    statistic=auc,
                    threshold=settings.min_roc_auc,
                    metric="roc_auc",
                    labelled=accuracy.labelled,
                    completeness=accuracy.completeness,
                ),
            )
        )
    for attr in bias.attributes if bias is not None else []:
        for gap in (
            attr.demographic_parity_difference,
            attr.true_positive_rate_difference,
            attr.false_positive_rate_difference,
        ):
            if gap is not None and gap.flagged:
                out.append(
                    (
                        f"bias-{attr.attribute}-{gap.metric}",
                        BiasDetectedV1(
                            **common,
                            test="newcombe_gap",
                            statistic=gap.value,
                            threshold=settings.bias_tolerance,
                            attribute=attr.attribute,
                            metric=gap.metric,
                            high_group=gap.high_group,
                            low_group=gap.low_group,
                            lower=gap.lower,
                            upper=gap.upper,
                        ),
                    )
                )
    return out


def _drift_findings(
    drift: DriftReport, rows: int, common: dict[str, Any]
) -> list[tuple[str, Finding]]:
    columns = [_drifted(c) for c in (*drift.features, *drift.prediction) if c.drifted]
    out: list[tuple[str, Finding]] = []
    if drift.dataset_drift:
        out.append(
            (
                "dataset",
                ModelDriftDetectedV1(
                    **common,
                    test="drift_share",
                    statistic=drift.share,
                    threshold=drift.drift_share,
                    finding="dataset",
                    rows=rows,
                    columns=columns,
                ),
            )
        )
    score = next((c for c in drift.prediction if c.column == "score"), None)
    if score is not None and score.drifted and score.test is not None:
        out.append(
            (
                "prediction",
                ModelDriftDetectedV1(
                    **common,
                    test=score.test,
                    statistic=score.statistic if score.statistic is not None else 0.0,
                    threshold=score.threshold if score.threshold is not None else 0.0,
                    finding="prediction",
                    rows=rows,
                    columns=columns,
                ),
            )
        )
    return out


def _drifted(c: ColumnDrift) -> DriftedColumn:
    return DriftedColumn(
        column=c.column,
        test=c.test,
        statistic=c.statistic,
        threshold=c.threshold,
        p_value=c.p_value,
        null_share_drifted=c.null_share_drifted,
    )


def finding_key(model: str, key: WindowKey, name: str) -> str:
    return f"{FINDINGS_PREFIX}{model}/{window_id(key)}/{name}.json"


def _publish(
    ports: Ports, model: str, key: WindowKey, found: list[tuple[str, Finding]], cause: str
) -> list[dict[str, Any]]:
    """Publish each finding not published for this window before; record it once it is."""
    out: list[dict[str, Any]] = []
    for name, detail in found:
        marker = finding_key(model, key, name)
        try:
            before = json.loads(ports.store.get(marker))
            out.append({**before, "new": False})
            continue
        except ObjectNotFoundError:
            pass
        chained = detail.model_copy(update={"correlation_id": cause, "caused_by": cause})
        result = ports.bus.put_events(
            [
                PutEvent(
                    source=SOURCE,
                    detail_type=chained.detail_type,
                    detail=chained.model_dump(mode="json", exclude_none=False),
                )
            ]
        )
        if result.failures:
            raise RuntimeError(f"{chained.detail_type} for {model} {key}: {result.failures}")
        record = {
            "detail_type": chained.detail_type,
            "finding": name,
            "event_id": result.event_ids[0],
        }
        ports.store.put(marker, json.dumps(record).encode(), content_type="application/json")
        out.append({**record, "new": True})
    return out


def metric_values(report: MonitorReport) -> dict[str, float]:
    """The EMF metrics of a report (namespace `aibackend/monitoring`, dimension `model`);
    a metric the window cannot define is left out rather than sent as 0."""
    out: dict[str, float] = {
        "Predictions": float(report.rows),
        "LabelledPredictions": float(report.accuracy.labelled),
        "LabelCompleteness": report.accuracy.completeness,
    }
    if report.drift is not None:
        out["DriftShare"] = report.drift.share
        out["DriftedFeatures"] = float(len(report.drift.drifted_features))
        out["DatasetDrift"] = float(report.drift.dataset_drift)
        score = next((c for c in report.drift.prediction if c.column == "score"), None)
        if score is not None and score.statistic is not None:
            out["ScoreDrift"] = score.statistic
    optional = {
        "RocAuc": report.accuracy.roc_auc,
        "Precision": report.accuracy.precision,
        "Recall": report.accuracy.recall,
        "Ece": report.accuracy.calibration.ece,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    gaps = [
        abs(g.value)
        for a in (report.bias.attributes if report.bias is not None else [])
        for g in (
            a.demographic_parity_difference,
            a.true_positive_rate_difference,
            a.false_positive_rate_difference,
        )
        if g is not None
    ]
    if gaps:
        out["BiasGap"] = max(gaps)
    return out
