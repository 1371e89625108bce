"""EventBridge `Product Viewed` -> the session's live profile (`aibackend.recommend.sessions`).

Nothing is published, and the write is keyed by (session, event id): a redelivered event
rewrites the same entry, so this consumer needs no idempotency record."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.contracts import expect, parse
from aibackend.contracts.rejects import rejects_contract_errors
from aibackend.contracts.shop import ProductViewedV1
from aibackend.masking import masked_logger
from aibackend.recommend.sessions import session_store

logger = masked_logger()
metrics = Metrics()

SESSIONS = session_store()


@logger.inject_lambda_context(correlation_id_path="detail.correlation_id || id")
@metrics.log_metrics
@rejects_contract_errors("shop_events")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # A `ContractError` (unknown version, invalid field) goes straight to the failure queue.
    view = expect(parse(event), ProductViewedV1)
    d = view.detail
    SESSIONS.record(d.session_id, view.event_id, d.item_id, d.viewed_at.timestamp())
    metrics.add_metric(name="ViewsRecorded", unit=MetricUnit.Count, value=1)
    return {"session_id": d.session_id, "item_id": d.item_id}
