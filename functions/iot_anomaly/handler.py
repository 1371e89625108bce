"""SQS batches of `Sensor Reading` events (a rule on the bus fills the queue) -> online
windows, one model call per device type a batch -> `Anomaly Detected`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.adapters import event_bus
from aibackend.events.batches import (
    Rejections,
    add_counts,
    bus_messages,
    fresh,
    partial_response,
    publish,
)
from aibackend.iot.devices import DEVICE_TYPES
from aibackend.iot.store import reading_store
from aibackend.ledger import event_ledger
from aibackend.masking import masked_logger
from aibackend.models.runtime import load_model
from aibackend.settings import platform_settings

from .detecting import Detector, detect_all, reading

logger = masked_logger()
metrics = Metrics()

#: The queue `[[queues]]` declares; a rule on the bus fills it (`[[queues.events]]`).
QUEUE = "iot-anomaly-readings"

DETECTORS = {t: Detector.of(load_model(f"iot_{t}")) for t in DEVICE_TYPES}
BUS = event_bus()
#: The online window table (`[resources] tables`).
STORE = reading_store()

# At-least-once delivery: the ledger skips a reading whose anomaly was published already. The
# window table is keyed by device and reading time, so a second write changes nothing.
LEDGER = event_ledger(platform_settings(), "iot-anomaly-idempotency")
#: A message no contract accepts goes to the queue's DLQ at once, with its reason.
REJECTIONS = Rejections(QUEUE)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    messages, rejected = bus_messages(event)
    todo, skipped = fresh(messages, rejected, LEDGER, reading)
    failed = REJECTIONS.send(rejected)
    detected = detect_all([c for _, c in todo], DETECTORS, STORE)
    failed += publish(
        BUS, [(m.message_id, out) for (m, _), (_, out) in zip(todo, detected, strict=True)]
    )
    done = [
        (m, c, out)
        for (m, c), (_, out) in zip(todo, detected, strict=True)
        if m.message_id not in failed
    ]
    LEDGER.record([m.event["id"] for m, _, _ in done])
    anomalies = [(c, out) for _, c, out in done if out]
    for cause, _ in anomalies:
        logger.info(
            "anomaly detected",
            extra={"device_id": cause.detail.device_id, "correlation_id": cause.correlation_id},
        )
    add_counts(
        metrics,
        Readings=len(done),
        AnomaliesDetected=len(anomalies),
        Redelivered=skipped,
        Rejected=len(rejected),
    )
    return partial_response(failed)
