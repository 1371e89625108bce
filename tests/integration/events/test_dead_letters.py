"""Contract errors through `aib dev`'s runtime: an event no contract accepts ends, on its first
attempt (retrying cannot change a contract error), with the error's type and reason, in the
consumer's failure queue (Lambda's on-failure record) or, for a consumer of batches from a
queue a rule fills, in that queue's DLQ."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aibackend.local.runtime import LocalRuntime
from aibackend.ports import QueueMessage
from tests.conftest import load_event
from tests.support import wait_for

from .conftest import failure_record, put

pytestmark = pytest.mark.slow


def scored_because_of(runtime: LocalRuntime, event_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in runtime.bus.archived(limit=1000, detail_type="Transaction Scored")
        if e["detail"]["caused_by"] == event_id
    ]


def dead_lettered(runtime: LocalRuntime, queue: str, event_id: str) -> QueueMessage:
    """The message carrying event `event_id` in `queue`'s DLQ (waits for it)."""
    dlq = runtime.queues.get(f"{queue}-dlq")

    def find() -> QueueMessage | None:
        for message in dlq.receive(10, visibility_timeout_s=0):
            if json.loads(message.body).get("id") == event_id:
                return message
        return None

    return wait_for(find, timeout=30)


def test_contract_errors_of_fraud_events_end_in_its_dead_letter_queue_with_the_reason(
    events_runtime: LocalRuntime,
) -> None:
    # GIVEN a Transaction Created of an unknown version, and one missing a required field
    unknown = {**load_event("eventbridge/transaction_created")["detail"], "schema_version": "2"}
    unknown_id = put(events_runtime, "aib.payments", "Transaction Created", unknown)
    invalid_id = put(events_runtime, "aib.payments", "Transaction Created", {"amount": -1})
    # THEN each ends in the DLQ of fraud_events' queue, as it came, with the contract rule it
    # broke in the message attributes EventBridge uses for the events it cannot deliver
    queue = "fraud-events-transactions"
    unknown_msg = dead_lettered(events_runtime, queue, unknown_id)
    invalid_msg = dead_lettered(events_runtime, queue, invalid_id)
    assert json.loads(unknown_msg.body)["detail"] == unknown

    def attribute(message: QueueMessage, name: str) -> str:
        return message.message_attributes[name]["StringValue"]

    assert attribute(unknown_msg, "ERROR_MESSAGE") == (
        f"UnknownVersionError: event {unknown_id}: 'Transaction Created': unknown "
        "schema_version '2'; known: 1"
    )
    message = attribute(invalid_msg, "ERROR_MESSAGE")
    assert message.startswith("InvalidDetailError: ")
    assert "detail.card_id: Field required" in message
    assert "detail.amount: Input should be greater than 0" in message
    # AND it was rejected on its first receive, not moved there after max_receive_count
    # failures (that move sets no reason)
    for m in (unknown_msg, invalid_msg):
        assert attribute(m, "ERROR_CODE") == "ContractRejected"
    failed = {f["event_id"] for f in events_runtime.bus.failures()}
    assert not failed & {unknown_id, invalid_id}
    assert scored_because_of(events_runtime, unknown_id) == []


def test_a_fraud_suspected_of_an_unknown_version_is_dead_lettered_by_alerts(
    events_runtime: LocalRuntime,
) -> None:
    detail = {**load_event("eventbridge/fraud_suspected")["detail"], "schema_version": "9"}
    event_id = put(events_runtime, "aib.fraud", "Fraud Suspected", detail)
    record = failure_record(events_runtime, "alerts", event_id)
    assert record["responsePayload"]["errorType"] == "UnknownVersionError"
    assert (
        "'Fraud Suspected': unknown schema_version '9'; known: 1"
        in (record["responsePayload"]["errorMessage"])
    )
