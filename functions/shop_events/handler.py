"""SQS batches of `Product Viewed` events (a rule on the bus fills the queue) -> the sessions'
live profiles (`aibackend.recommend.sessions`), one write a batch.

Nothing is published, and a view is keyed by (session, event id): a redelivered event rewrites
the same entry, so this consumer needs no event ledger."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.contracts.shop import viewed
from aibackend.events.batches import Rejections, add_counts, bus_messages, parsed, partial_response
from aibackend.masking import masked_logger
from aibackend.recommend.sessions import SessionView, session_store

logger = masked_logger()
metrics = Metrics()

#: The queue `[[queues]]` declares; a rule on the bus fills it (`[[queues.events]]`).
QUEUE = "shop-events-views"
SESSIONS = session_store()
#: A message no contract accepts goes to the queue's DLQ at once, with its reason.
REJECTIONS = Rejections(QUEUE)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    messages, rejected = bus_messages(event)
    views = parsed(messages, rejected, viewed)
    failed = REJECTIONS.send(rejected)
    SESSIONS.record_many(
        [
            SessionView(
                v.detail.session_id, v.event_id, v.detail.item_id, v.detail.viewed_at.timestamp()
            )
            for _, v in views
        ]
    )
    add_counts(metrics, ViewsRecorded=len(views), Rejected=len(rejected))
    return partial_response(failed)
