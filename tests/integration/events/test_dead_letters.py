"""Contract errors through `aib dev`'s runtime: an event no contract accepts ends in the
consumer's failure queue (Lambda's on-failure record) with the error's type and reason, on its
first attempt: retrying cannot change a contract error."""

from __future__ import annotations

from typing import Any

import pytest

from aibackend.local.runtime import LocalRuntime
from tests.conftest import load_event

from .conftest import failure_record, put

pytestmark = pytest.mark.slow


def scored_because_of(runtime: LocalRuntime, event_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in runtime.bus.archived(limit=1000, detail_type="Transaction Scored")
        if e["detail"]["caused_by"] == event_id
    ]


def test_contract_errors_of_fraud_events_end_in_its_failure_queue_with_the_reason(
    events_runtime: LocalRuntime,
) -> None:
    # GIVEN a Transaction Created of an unknown version, and one missing a required field
    unknown = {**load_event("eventbridge/transaction_created")["detail"], "schema_version": "2"}
    unknown_id = put(events_runtime, "aib.payments", "Transaction Created", unknown)
    invalid_id = put(events_runtime, "aib.payments", "Transaction Created", {"amount": -1})
    # THEN each ends in fraud_events' failure queue; the record says which contract rule broke
    unknown_record = failure_record(events_runtime, "fraud_events", unknown_id)
    invalid_record = failure_record(events_runtime, "fraud_events", invalid_id)
    assert unknown_record["responsePayload"]["errorType"] == "UnknownVersionError"
    assert unknown_record["responsePayload"]["errorMessage"] == (
        f"event {unknown_id}: 'Transaction Created': unknown schema_version '2'; known: 1"
    )
    assert invalid_record["responsePayload"]["errorType"] == "InvalidDetailError"
    message = invalid_record["responsePayload"]["errorMessage"]
    assert "detail.card_id: Field required" in message
    assert "detail.amount: Input should be greater than 0" in message
    # AND it was rejected on the first attempt, not after Lambda's asynchronous retries: the
    # delivery itself succeeded, so the bus records no failed delivery for either event
    for record in (unknown_record, invalid_record):
        assert record["requestContext"]["condition"] == "ContractRejected"
        assert record["requestContext"]["approximateInvokeCount"] == 1
        assert record["requestContext"]["functionArn"].endswith(":function:fraud_events")
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
