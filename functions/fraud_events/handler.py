"""EventBridge `Transaction Created` -> online features, score -> `Transaction Scored` /
`Fraud Suspected`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.adapters import event_bus
from aibackend.capture import Capture
from aibackend.contracts.rejects import rejects_contract_errors
from aibackend.fraud.decision import DecisionSettings
from aibackend.idempotency import persistence_layer
from aibackend.masking import masked_logger
from aibackend.models.runtime import load_model
from aibackend.pipeline.features import feature_store
from aibackend.settings import platform_settings

from .scoring import score_event

logger = masked_logger()
metrics = Metrics()

MODEL = load_model("fraud")
SETTINGS = DecisionSettings.from_env()
BUS = event_bus()
#: The online feature table the pipeline writes too (`[resources] tables`).
FEATURES = feature_store()
#: Off unless functions/monitoring.toml declares `[capture.fraud]`.
CAPTURE = Capture.from_env("fraud")
logger.append_keys(model_name=MODEL.name, model_version=MODEL.version)

# EventBridge delivers at least once, and Lambda retries an invocation whose answer was lost:
# one record per event id makes a redelivered event return the first result instead of
# publishing again. The bus is another store, so a crash between publishing and completing
# the record can still publish twice: consumers dedupe on `caused_by`. The feature table is
# keyed by transaction id, so a second write changes nothing.
IDEMPOTENCY = persistence_layer(platform_settings(), "fraud-events-idempotency")
ONCE_PER_EVENT = IdempotencyConfig(event_key_jmespath="id", expires_after_seconds=86_400)

#: The chain's id in every log line: the detail's correlation id, else the event's own id.
CORRELATION_ID = "detail.correlation_id || id"


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID)
@metrics.log_metrics
@idempotent(config=ONCE_PER_EVENT, persistence_store=IDEMPOTENCY)
@rejects_contract_errors("fraud_events")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # A `ContractError` (unknown version, invalid field) goes straight to the failure queue
    # with its type and message as the reason (`rejects_contract_errors`).
    scored = score_event(event, MODEL, SETTINGS, FEATURES)
    out = scored.events
    result = BUS.put_events(out)
    if result.failed_count:
        # Raising makes Lambda retry the whole event; the bus refused part of our output.
        raise RuntimeError(f"event bus refused {result.failures}")
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=1)
    verdict = out[0].detail
    if CAPTURE.enabled:
        # The event path's inference id is the id of the event it scored (`caused_by` of
        # `Transaction Scored`), so a label for it can be joined later.
        output = {"score": verdict["score"], "decision": verdict["decision"]}
        inputs = scored.transaction.model_dump(mode="json")
        CAPTURE.send(MODEL.version, [(event["id"], inputs, output)], scored.correlation_id)
    if len(out) > 1:
        metrics.add_metric(name="FraudSuspected", unit=MetricUnit.Count, value=1)
        logger.info("fraud suspected", extra={"transaction_id": verdict["transaction_id"]})
    return {"published": list(result.event_ids), "decision": verdict["decision"]}
