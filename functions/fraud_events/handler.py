"""SQS batches of `Transaction Created` events (a rule on the bus fills the queue) -> online
features, one model call a batch -> `Transaction Scored` / `Fraud Suspected`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.adapters import event_bus
from aibackend.capture import Capture
from aibackend.events.batches import (
    Rejections,
    add_counts,
    bus_messages,
    fresh,
    partial_response,
    publish,
)
from aibackend.fraud.decision import DecisionSettings
from aibackend.ledger import event_ledger
from aibackend.masking import masked_logger
from aibackend.models.runtime import load_model
from aibackend.pipeline.features import feature_store
from aibackend.settings import platform_settings

from .scoring import Scored, created, score_events

logger = masked_logger()
metrics = Metrics()

#: The queue `[[queues]]` declares; a rule on the bus fills it (`[[queues.events]]`).
QUEUE = "fraud-events-transactions"
MODEL = load_model("fraud")
SETTINGS = DecisionSettings.from_env()
BUS = event_bus()
#: The online feature table the pipeline writes too (`[resources] tables`).
FEATURES = feature_store()
#: Off unless functions/monitoring.toml declares `[capture.fraud]`.
CAPTURE = Capture.from_env("fraud")
logger.append_keys(model_name=MODEL.name, model_version=MODEL.version)

# SQS (and EventBridge before it) deliver at least once: the ledger remembers which events
# were published, so a redelivered one is skipped instead of published again. An event is
# recorded after it is published: a crash in between publishes it twice, and consumers dedupe
# on `caused_by`. The feature table is keyed by transaction id: a second write changes nothing.
LEDGER = event_ledger(platform_settings(), "fraud-events-idempotency")
#: A message no contract accepts goes to the queue's DLQ at once, with its reason.
REJECTIONS = Rejections(QUEUE)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    messages, rejected = bus_messages(event)
    todo, skipped = fresh(messages, rejected, LEDGER, created)
    failed = REJECTIONS.send(rejected)
    scored = score_events([c for _, c in todo], MODEL, SETTINGS, FEATURES)
    failed += publish(
        BUS, [(m.message_id, s.events) for (m, _), s in zip(todo, scored, strict=True)]
    )
    published = [
        (m, s) for (m, _), s in zip(todo, scored, strict=True) if m.message_id not in failed
    ]
    LEDGER.record([m.event["id"] for m, _ in published])
    if CAPTURE.enabled and published:
        # The event path's inference id is the id of the event it scored (`caused_by` of
        # `Transaction Scored`), so a label for it can be joined later.
        CAPTURE.send(
            MODEL.version,
            [
                (m.event["id"], s.transaction.model_dump(mode="json"), _verdict(s))
                for m, s in published
            ],
            [s.correlation_id for _, s in published],
        )
    if published:
        # One line a batch, naming each transaction's chain: `grep <correlation id>` finds it.
        logger.info(
            "transactions scored",
            extra={
                "scored": [
                    {
                        "transaction_id": s.transaction.transaction_id,
                        "correlation_id": s.correlation_id,
                        "decision": s.events[0].detail["decision"],
                    }
                    for _, s in published
                ]
            },
        )
    suspected = [s for _, s in published if len(s.events) > 1]
    for s in suspected:
        logger.info(
            "fraud suspected",
            extra={
                "transaction_id": s.transaction.transaction_id,
                "correlation_id": s.correlation_id,
            },
        )
    add_counts(
        metrics,
        Predictions=len(published),
        FraudSuspected=len(suspected),
        Redelivered=skipped,
        Rejected=len(rejected),
    )
    return partial_response(failed)


def _verdict(scored: Scored) -> dict[str, Any]:
    detail = scored.events[0].detail
    return {"score": detail["score"], "decision": detail["decision"]}
