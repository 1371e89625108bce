"""EventBridge `Fraud Suspected` / `Anomaly Detected` -> deduplicate, rate-limit -> sinks."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.contracts import parse
from aibackend.contracts.rejects import rejects_contract_errors
from aibackend.idempotency import persistence_layer
from aibackend.masking import masked_logger
from aibackend.secrets import get_secret
from aibackend.settings import platform_settings

from .alerting import alert_of, route
from .settings import AlertSettings
from .sinks import build_sinks
from .state import alert_state

logger = masked_logger()
metrics = Metrics()

SETTINGS = platform_settings()
ALERTS = AlertSettings.from_env()
STATE = alert_state(SETTINGS)
SINKS = build_sinks(SETTINGS, ALERTS, logger.warning, lambda: get_secret("webhook_secret"))

# A redelivered event (EventBridge is at least once) returns the first outcome; a failed one
# (a sink raised) runs again, and keeps its deduplication claim and rate slot.
IDEMPOTENCY = persistence_layer(SETTINGS, "alerts-idempotency")
ONCE_PER_EVENT = IdempotencyConfig(event_key_jmespath="id", expires_after_seconds=86_400)

#: Metric per outcome status.
METRICS = {
    "sent": "AlertsSent",
    "duplicate": "AlertsDeduplicated",
    "suppressed": "AlertsSuppressed",
}


@logger.inject_lambda_context(correlation_id_path="detail.correlation_id || id")
@metrics.log_metrics
@idempotent(config=ONCE_PER_EVENT, persistence_store=IDEMPOTENCY)
@rejects_contract_errors("alerts")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    alert = alert_of(parse(event))  # a ContractError ends in the failure queue with its reason
    outcome = route(alert, STATE, SINKS, ALERTS, time.time())
    metrics.add_metric(name=METRICS[outcome.status], unit=MetricUnit.Count, value=1)
    if outcome.status != "sent":
        logger.info(
            f"alert {outcome.status}",
            extra={"alert_key": alert.key, "rate_key": alert.rate_key, **outcome.as_dict()},
        )
    return outcome.as_dict()
