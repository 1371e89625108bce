"""Scheduled Event (hourly) -> for every monitored model, the hour that ended before the event's
`time` and its day so far: report, EMF metrics, and each new finding on the platform bus.

The windows come from the event's own `time`, not the clock, so a retried delivery judges the
same windows (and publishes nothing twice). An event whose detail names them
(`{"model": "fraud", "windows": ["hour:2026-11-27T10"]}`, e.g. sent by `aib monitor run` or by
hand to fill a gap) judges those instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.masking import masked_logger
from aibackend.monitoring.runner import run_monitor
from aibackend.monitoring.service import metric_values

logger = masked_logger()
metrics = Metrics(namespace="aibackend/monitoring")
COUNTS = frozenset({"Predictions", "LabelledPredictions", "DriftedFeatures"})


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    detail = event.get("detail") or {}
    at = datetime.fromisoformat(str(event.get("time") or datetime.now(UTC).isoformat()))
    reports = run_monitor(
        models=[detail["model"]] if detail.get("model") else None,
        windows=detail.get("windows"),
        at=at,
        cause=str(event.get("id") or "manual"),
    )
    out = []
    for r in reports:
        logger.info(
            "window judged",
            extra={
                "model": r.model,
                "window": f"{r.window.span}:{r.window.start.isoformat()}",
                "rows": r.rows,
                "findings": [f["finding"] for f in r.findings if f["new"]],
                "baseline_problem": r.baseline.problem,
            },
        )
        if r.window.span == "hour":
            _emit(r.model, metric_values(r))
        out.append(
            {
                "model": r.model,
                "window": r.window.model_dump(mode="json"),
                "report_key": r.report_key,
                "findings": r.findings,
            }
        )
    return {"reports": out}


def _emit(model: str, values: dict[str, float]) -> None:
    """One EMF document per model (dimension `model`), hourly windows only: a day-so-far
    window would count its hours again."""
    metrics.add_dimension(name="model", value=model)
    for name, value in values.items():
        unit = MetricUnit.Count if name in COUNTS else MetricUnit.NoUnit
        metrics.add_metric(name=name, unit=unit, value=value)
    metrics.flush_metrics()
