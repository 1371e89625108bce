"""EventBridge `Transaction Created` -> score -> `Transaction Scored` / `Fraud Suspected`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.adapters import event_bus
from aibackend.models.runtime import load_model

from .scoring import Settings, score_event

logger = Logger()
metrics = Metrics()

MODEL = load_model("fraud")
SETTINGS = Settings.from_env()
BUS = event_bus()
logger.append_keys(model_name=MODEL.name, model_version=MODEL.version)


@logger.inject_lambda_context(correlation_id_path="id")
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    out = score_event(event, MODEL, SETTINGS)
    result = BUS.put_events(out)
    if result.failed_count:
        # Raising makes Lambda retry the whole event; the bus refused part of our output.
        raise RuntimeError(f"event bus refused {result.failures}")
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=1)
    if len(out) > 1:
        metrics.add_metric(name="FraudSuspected", unit=MetricUnit.Count, value=1)
        logger.info("fraud suspected", extra={"transaction_id": out[0].detail["transaction_id"]})
