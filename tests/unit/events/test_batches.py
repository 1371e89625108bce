"""Batches of EventBridge events from a queue (aibackend.events.batches): what a consumer of
`[[queues.events]]` reads, rejects and answers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from aibackend.adapters.local_queue import SqliteQueueService
from aibackend.contracts.base import ContractError
from aibackend.events.batches import (
    CONTRACT_REJECTED,
    Rejected,
    Rejections,
    bus_messages,
    fresh,
    partial_response,
    publish,
)
from aibackend.ports import PutEvent, PutEventsResult, QueueConfig
from tests.conftest import load_event


def record(message_id: str, body: str) -> dict[str, Any]:
    return {"messageId": message_id, "body": body}


def test_events_are_read_in_order_and_bodies_that_are_no_event_are_rejected_with_why() -> None:
    # GIVEN the sample batch plus a body that is not JSON and one that is JSON but no event
    sample = load_event("sqs/fraud_events_batch")
    batch = {
        "Records": [
            *sample["Records"],
            record("m-text", "not json"),
            record("m-list", json.dumps([1, 2])),
        ]
    }
    # WHEN it is read
    events, rejected = bus_messages(batch)
    # THEN the two events come out in order, with their message ids and bodies
    assert [e.message_id for e in events] == [r["messageId"] for r in sample["Records"]]
    assert [e.event["id"] for e in events] == [
        json.loads(r["body"])["id"] for r in sample["Records"]
    ]
    assert events[0].body == sample["Records"][0]["body"]
    # AND the other two are rejected, each with a reason a person can act on
    assert [(r.message_id, r.body) for r in rejected] == [
        ("m-text", "not json"),
        ("m-list", "[1, 2]"),
    ]
    assert rejected[0].reason.startswith("the body is not JSON: ")
    assert rejected[1].reason == "the body is not an EventBridge event (no id, detail-type)"


@pytest.fixture
def queues(tmp_path: Path) -> SqliteQueueService:
    service = SqliteQueueService(tmp_path / "queues.db")
    service.ensure(QueueConfig(name="orders-dlq"))
    return service


def test_a_rejected_message_goes_to_the_dlq_unchanged_with_its_reason(
    queues: SqliteQueueService,
) -> None:
    # WHEN a consumer of `orders` rejects a message
    failed = Rejections("orders", lambda: queues).send(
        [Rejected("m-1", '{"id": "e-1"}', "UnknownVersionError: unknown schema_version '9'")]
    )
    # THEN it is in orders-dlq with its body as it came and the reason in its attributes
    assert failed == []
    [message] = queues.get("orders-dlq").receive(10)
    assert message.body == '{"id": "e-1"}'
    assert message.message_attributes["ERROR_CODE"]["StringValue"] == CONTRACT_REJECTED
    assert message.message_attributes["ERROR_MESSAGE"]["StringValue"] == (
        "UnknownVersionError: unknown schema_version '9'"
    )


def test_a_rejection_that_cannot_be_sent_is_returned_for_a_retry(
    queues: SqliteQueueService,
) -> None:
    # GIVEN a consumer whose DLQ does not exist (a missing grant on AWS fails the same way)
    rejections = Rejections("unknown", lambda: queues)
    # WHEN it rejects two messages
    failed = rejections.send([Rejected("m-1", "x", "why"), Rejected("m-2", "y", "why")])
    # THEN both are reported to come back, not lost
    assert failed == ["m-1", "m-2"]


def test_the_partial_batch_response_names_each_failed_message_once() -> None:
    assert partial_response(["a", "b", "a"]) == {
        "batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]
    }
    assert partial_response([]) == {"batchItemFailures": []}


class MemoryLedger:
    def __init__(self, handled: set[str]) -> None:
        self.ids = set(handled)

    def handled(self, ids: Sequence[str]) -> set[str]:
        return self.ids & set(ids)

    def record(self, ids: Sequence[str]) -> None:
        self.ids |= set(ids)


def message(i: int, event_id: str, **detail: Any) -> dict[str, Any]:
    body = {"id": event_id, "detail-type": "Order Placed", "detail": detail}
    return record(f"m-{i}", json.dumps(body))


def test_fresh_skips_handled_and_repeated_events_and_rejects_what_does_not_parse() -> None:
    # GIVEN a batch: a handled event, a new one twice, and one its contract refuses
    batch = {
        "Records": [
            message(0, "e-old"),
            message(1, "e-new"),
            message(2, "e-new"),
            message(3, "e-bad", version="9"),
        ]
    }
    messages, rejected = bus_messages(batch)

    def parse(event: dict[str, Any]) -> str:
        if event["detail"].get("version") == "9":
            raise ContractError("unknown schema_version '9'")
        return str(event["id"]).upper()

    # WHEN the consumer asks which to work on
    todo, skipped = fresh(messages, rejected, MemoryLedger({"e-old"}), parse)
    # THEN the new event once, parsed; two skipped; the refused one rejected with its reason
    assert [(m.message_id, parsed) for m, parsed in todo] == [("m-1", "E-NEW")]
    assert skipped == 2
    assert [(r.message_id, r.reason) for r in rejected] == [
        ("m-3", "ContractError: unknown schema_version '9'")
    ]


class Bus:
    """Refuses entries whose detail says so; raises on the call whose first entry says so."""

    def __init__(self) -> None:
        self.calls: list[list[PutEvent]] = []

    def put_events(self, entries: Sequence[PutEvent]) -> PutEventsResult:
        self.calls.append(list(entries))
        if entries[0].detail.get("explode"):
            raise ConnectionError("bus unreachable")
        failures = tuple(
            (i, "InternalFailure", "try again") for i, e in enumerate(entries) if e.detail.get("no")
        )
        ids = tuple(None if e.detail.get("no") else f"id-{i}" for i, e in enumerate(entries))
        return PutEventsResult(event_ids=ids, failures=failures)


def out(**detail: Any) -> PutEvent:
    return PutEvent(source="t", detail_type="Done", detail=detail)


def test_publish_puts_ten_entries_a_call_and_fails_only_the_messages_refused() -> None:
    # GIVEN 11 messages of two results each (22 entries): m-3's second is refused, and the
    # third call (entries 20-21, m-10's) fails whole
    outputs = [(f"m-{i}", [out(), out(no=i == 3, explode=i == 10)]) for i in range(11)]
    outputs[10] = ("m-10", [out(explode=True), out()])
    bus = Bus()
    # WHEN they are published
    failed = publish(bus, outputs)
    # THEN in three calls of at most ten entries, and only m-3 and m-10 come back
    assert [len(c) for c in bus.calls] == [10, 10, 2]
    assert failed == ["m-3", "m-10"]


def test_add_counts_emits_each_non_zero_count_only() -> None:
    from aibackend.events.batches import add_counts

    class Metrics:
        def __init__(self) -> None:
            self.added: list[tuple[str, str, int]] = []

        def add_metric(self, *, name: str, unit: Any, value: int) -> None:
            self.added.append((name, str(unit.value), value))

    metrics = Metrics()
    add_counts(metrics, Predictions=10, Redelivered=0, Rejected=1)
    assert metrics.added == [("Predictions", "Count", 10), ("Rejected", "Count", 1)]
