"""EventBridge `Product Viewed` -> demand per item -> `Price Suggested` within guardrails."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.adapters import event_bus
from aibackend.contracts.rejects import rejects_contract_errors
from aibackend.idempotency import persistence_layer
from aibackend.masking import masked_logger
from aibackend.settings import platform_settings

from .demand import demand_store
from .pricing import PricingSettings
from .repricing import reprice

logger = masked_logger()
metrics = Metrics()

SETTINGS = PricingSettings.from_env()
BUS = event_bus()
STORE = demand_store()
# Views are keyed by event id (a redelivery counts once); the record makes a redelivered
# event return its first answer instead of publishing its price again.
IDEMPOTENCY = persistence_layer(platform_settings(), "pricing-idempotency")
ONCE_PER_EVENT = IdempotencyConfig(event_key_jmespath="id", expires_after_seconds=86_400)


@logger.inject_lambda_context(correlation_id_path="detail.correlation_id || id")
@metrics.log_metrics
@idempotent(config=ONCE_PER_EVENT, persistence_store=IDEMPOTENCY)
@rejects_contract_errors("pricing")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    out = reprice(event, SETTINGS, STORE)
    metrics.add_metric(name="ViewsPriced", unit=MetricUnit.Count, value=1)
    if not out:
        return {"published": []}
    result = BUS.put_events(out)
    if result.failed_count:
        raise RuntimeError(f"event bus refused {result.failures}")
    metrics.add_metric(name="PricesSuggested", unit=MetricUnit.Count, value=1)
    return {"published": list(result.event_ids), "price": out[0].detail["price"]}
