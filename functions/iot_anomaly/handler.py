"""EventBridge `Sensor Reading` -> online window, score -> `Anomaly Detected`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.adapters import event_bus
from aibackend.contracts.rejects import rejects_contract_errors
from aibackend.idempotency import persistence_layer
from aibackend.iot.devices import DEVICE_TYPES
from aibackend.iot.store import reading_store
from aibackend.masking import masked_logger
from aibackend.models.runtime import load_model
from aibackend.settings import platform_settings

from .detecting import Detector, detect

logger = masked_logger()
metrics = Metrics()

DETECTORS = {t: Detector.of(load_model(f"iot_{t}")) for t in DEVICE_TYPES}
BUS = event_bus()
#: The online window table (`[resources] tables`).
STORE = reading_store()

# At-least-once delivery: one record per event id returns the first result on redelivery;
# the window table is keyed by device and reading time, so a second write changes nothing.
IDEMPOTENCY = persistence_layer(platform_settings(), "iot-anomaly-idempotency")
ONCE_PER_EVENT = IdempotencyConfig(event_key_jmespath="id", expires_after_seconds=86_400)


@logger.inject_lambda_context(correlation_id_path="detail.correlation_id || id")
@metrics.log_metrics
@idempotent(config=ONCE_PER_EVENT, persistence_store=IDEMPOTENCY)
@rejects_contract_errors("iot_anomaly")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # A `ContractError` (unknown version, invalid field) goes straight to the failure queue.
    score, out = detect(event, DETECTORS, STORE)
    metrics.add_metric(name="Readings", unit=MetricUnit.Count, value=1)
    if not out:
        return {"score": score, "anomaly": False, "published": []}
    result = BUS.put_events(out)
    if result.failed_count:
        raise RuntimeError(f"event bus refused {result.failures}")
    metrics.add_metric(name="AnomaliesDetected", unit=MetricUnit.Count, value=1)
    logger.info("anomaly detected", extra={"device_id": out[0].detail["device_id"]})
    return {"score": score, "anomaly": True, "published": list(result.event_ids)}
