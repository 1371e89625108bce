"""SQS batches of `Product Viewed` events (a rule on the bus fills the queue) -> demand per
item -> `Price Suggested` within guardrails: one counting write, one price write and one
`PutEvents` (10 entries a call) a batch."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.adapters import event_bus
from aibackend.contracts.shop import viewed
from aibackend.events.batches import (
    Rejections,
    add_counts,
    bus_messages,
    fresh,
    partial_response,
    publish,
)
from aibackend.ledger import event_ledger
from aibackend.masking import masked_logger
from aibackend.settings import platform_settings

from .demand import demand_store
from .pricing import PricingSettings
from .repricing import reprice

logger = masked_logger()
metrics = Metrics()

#: The queue `[[queues]]` declares; a rule on the bus fills it (`[[queues.events]]`).
QUEUE = "pricing-views"
SETTINGS = PricingSettings.from_env()
BUS = event_bus()
STORE = demand_store()
# Views are keyed by event id (a redelivery counts once); the ledger skips a redelivered event
# instead of publishing its price again. An event is recorded after its price is published: a
# crash in between publishes it twice, and consumers dedupe on `caused_by`.
LEDGER = event_ledger(platform_settings(), "pricing-idempotency")
#: A message no contract accepts goes to the queue's DLQ at once, with its reason.
REJECTIONS = Rejections(QUEUE)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    messages, rejected = bus_messages(event)
    todo, skipped = fresh(messages, rejected, LEDGER, viewed)
    failed = REJECTIONS.send(rejected)
    repriced = reprice([v for _, v in todo], SETTINGS, STORE)
    failed += publish(
        BUS, [(m.message_id, r.events) for (m, _), r in zip(todo, repriced, strict=True)]
    )
    done = [(m, r) for (m, _), r in zip(todo, repriced, strict=True) if m.message_id not in failed]
    # The prices once published (a view whose put failed is retried against the old price).
    STORE.set_prices({r.item_id: r.price for _, r in done})
    LEDGER.record([m.event["id"] for m, _ in done])
    add_counts(
        metrics,
        ViewsPriced=len(done),
        PricesSuggested=sum(len(r.events) for _, r in done),
        Redelivered=skipped,
        Rejected=len(rejected),
    )
    return partial_response(failed)
