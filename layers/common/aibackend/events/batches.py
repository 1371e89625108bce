"""SQS batches of EventBridge events, for consumers whose queue a rule fills
(`[[queues.events]]`): reading the events out of the messages, skipping those handled already
(`aibackend.ledger`), rejecting what no contract accepts, publishing the results 10 entries a
`PutEvents`, and the partial batch response. A consumer's handler::

    messages, rejected = bus_messages(event)
    todo, skipped = fresh(messages, rejected, LEDGER, parse_my_event)
    failed = REJECTIONS.send(rejected)
    results = work_on([parsed for _, parsed in todo])          # the whole batch at once
    failed += publish(BUS, [(m.message_id, r.events) for (m, _), r in zip(todo, results)])
    LEDGER.record([m.event["id"] for m, _ in todo if m.message_id not in failed])
    return partial_response(failed)

A message no contract accepts (not JSON, not an event, an unknown version, an invalid field)
would fail the same way on every receive until `max_receive_count` moved it to the DLQ with
no reason attached. `Rejections.send` puts it there at once instead, its body unchanged and
the reason in message attributes named as EventBridge names them on the events it could not
deliver (`ERROR_CODE` = `ContractRejected`, `ERROR_MESSAGE` = the error): `aib queues
<queue>-dlq` shows both kinds alike, and `aib redrive <queue>-dlq` sends them back as they
came once the consumer accepts them. If that send fails, the message is reported for a retry
like any failure: never lost.

On AWS the consumer names `<queue>-dlq` with `write` in its `resources.queues` (the platform
then grants `sqs:SendMessage` on it and sets its URL); locally it lives in `.aib/queues.db`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aibackend.adapters import queue_service
from aibackend.catalog import dead_letter_queue
from aibackend.contracts.base import ContractError
from aibackend.ledger import EventLedger
from aibackend.ports import EventBus, PutEvent, QueueService

log = logging.getLogger(__name__)

#: `ERROR_CODE` of a message its consumer rejected (EventBridge's own are its error codes).
CONTRACT_REJECTED = "ContractRejected"
#: PutEvents takes at most 10 entries a call.
PUT_LIMIT = 10

Parsed = TypeVar("Parsed")


@dataclass(frozen=True)
class BusMessage:
    """One message of the batch and the EventBridge event it carries."""

    message_id: str
    body: str
    event: dict[str, Any]

    def rejected(self, error: Exception) -> Rejected:
        """This message refused for `error` (a `ContractError` of its event)."""
        return Rejected(self.message_id, self.body, f"{type(error).__name__}: {error}")


@dataclass(frozen=True)
class Rejected:
    """A message refused as it is: the same body would fail on every receive."""

    message_id: str
    body: str
    reason: str


def bus_messages(sqs_event: dict[str, Any]) -> tuple[list[BusMessage], list[Rejected]]:
    """The batch's events in order, and the messages whose body is no EventBridge event."""
    events: list[BusMessage] = []
    rejected: list[Rejected] = []
    for record in sqs_event.get("Records") or []:
        message_id, body = record["messageId"], record.get("body") or ""
        try:
            event = json.loads(body)
        except json.JSONDecodeError as e:
            rejected.append(Rejected(message_id, body, f"the body is not JSON: {e}"))
            continue
        if not isinstance(event, dict) or not all(k in event for k in ("id", "detail-type")):
            rejected.append(
                Rejected(
                    message_id, body, "the body is not an EventBridge event (no id, detail-type)"
                )
            )
            continue
        events.append(BusMessage(message_id, body, event))
    return events, rejected


class Rejections:
    """Sends rejected messages of `queue` to its DLQ, each with its reason."""

    def __init__(self, queue: str, queues: Callable[[], QueueService] = queue_service) -> None:
        """`queues` is resolved on the first rejection, so importing a handler touches none."""
        self.queue = dead_letter_queue(queue)
        self._queues = queues

    def send(self, rejected: Iterable[Rejected]) -> list[str]:
        """Ids of the messages whose send failed (to report for a retry)."""
        failed: list[str] = []
        for r in rejected:
            attributes = {
                "ERROR_CODE": {"DataType": "String", "StringValue": CONTRACT_REJECTED},
                "ERROR_MESSAGE": {"DataType": "String", "StringValue": r.reason[:1000]},
            }
            try:
                self._queues().get(self.queue).send(r.body, message_attributes=attributes)
            except Exception:
                log.exception("message %s: sending it to %s failed", r.message_id, self.queue)
                failed.append(r.message_id)
                continue
            log.warning("message %s rejected to %s: %s", r.message_id, self.queue, r.reason)
        return failed


def fresh(
    messages: Sequence[BusMessage],
    rejected: list[Rejected],
    ledger: EventLedger,
    parse: Callable[[dict[str, Any]], Parsed],
) -> tuple[list[tuple[BusMessage, Parsed]], int]:
    """The batch's events the ledger has not seen, each with `parse(event)`; returns them and
    how many were skipped as handled already (a redelivery, or a second copy in the batch). A
    message whose `parse` raises a `ContractError` is appended to `rejected`."""
    handled = ledger.handled([m.event["id"] for m in messages])
    unseen: list[BusMessage] = []
    for m in messages:
        if m.event["id"] not in handled:
            handled.add(m.event["id"])
            unseen.append(m)
    return parsed(unseen, rejected, parse), len(messages) - len(unseen)


def parsed(
    messages: Sequence[BusMessage],
    rejected: list[Rejected],
    parse: Callable[[dict[str, Any]], Parsed],
) -> list[tuple[BusMessage, Parsed]]:
    """Each message with `parse(event)`, for a consumer whose writes make a redelivery
    harmless (no ledger); a message whose `parse` raises a `ContractError` is appended to
    `rejected` instead."""
    out: list[tuple[BusMessage, Parsed]] = []
    for m in messages:
        try:
            out.append((m, parse(m.event)))
        except ContractError as e:
            rejected.append(m.rejected(e))
    return out


def publish(bus: EventBus, outputs: Sequence[tuple[str, Sequence[PutEvent]]]) -> list[str]:
    """Put each message's output events on `bus`, 10 entries a call; returns the ids of the
    messages the bus refused an entry of (to retry: their other entries may be out already,
    and consumers dedupe on `caused_by`)."""
    entries = [(message_id, e) for message_id, events in outputs for e in events]
    failed: list[str] = []
    for start in range(0, len(entries), PUT_LIMIT):
        chunk = entries[start : start + PUT_LIMIT]
        try:
            result = bus.put_events([e for _, e in chunk])
        except Exception:
            log.exception(
                "event bus put of %d entries failed; their messages are retried", len(chunk)
            )
            failed.extend(m for m, _ in chunk)
            continue
        for index, code, message in result.failures:
            log.error(
                "event bus refused an entry of message %s: %s %s", chunk[index][0], code, message
            )
            failed.append(chunk[index][0])
    return list(dict.fromkeys(failed))


def add_counts(metrics: Any, **counts: int) -> None:
    """Each non-zero count as a Powertools `Count` metric of that name (a batch's Predictions,
    Redelivered, Rejected...): a zero would only be noise in the EMF line."""
    from aws_lambda_powertools.metrics import MetricUnit

    for name, value in counts.items():
        if value:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def partial_response(failed: Iterable[str]) -> dict[str, Any]:
    """The SQS partial batch response: these messages come back, the others are deleted."""
    return {"batchItemFailures": [{"itemIdentifier": m} for m in dict.fromkeys(failed)]}
