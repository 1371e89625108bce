"""One contract, two adapters: the local SQLite queue engine behaves like SQS (moto).

moto's SQS slows down as a queue fills, so every case keeps its queues to a few messages.
moto's visibility clock is millisecond-grained and strict (visible once now > deadline), so a
message made visible "now" is received again after `_tick()`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from aibackend.adapters.local_queue import (
    MAX_MESSAGE_BYTES,
    QueueNotFoundError,
    QueueRequestError,
    ReceiptHandleError,
    SqliteQueueService,
)
from aibackend.adapters.sqs import SqsQueueService
from aibackend.ports import Queue, QueueConfig, QueueMessage, QueueService

REGION = "eu-west-1"


@pytest.fixture(params=["local", "aws"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueService]:
    if request.param == "local":
        with SqliteQueueService(tmp_path / "queues.db") as svc:
            yield svc
        return
    with mock_aws():
        yield SqsQueueService(boto3.client("sqs", region_name=REGION), create=True)


@pytest.fixture
def queue(service: QueueService) -> Queue:
    return service.ensure(QueueConfig(name="orders", visibility_timeout_s=30))


def _tick() -> None:
    time.sleep(0.005)


def _receive_all(queue: Queue, n: int, **kwargs: int) -> list[QueueMessage]:
    """Receive until `n` messages came back (SQS may return fewer than asked per call)."""
    got: list[QueueMessage] = []
    for _ in range(20):
        got += queue.receive(10, **kwargs)
        if len(got) >= n:
            break
    return got


def test_a_sent_message_comes_back_with_its_checksum_and_sqs_attributes(queue: Queue) -> None:
    # GIVEN a message sent a moment ago
    before_ms = int(time.time() * 1000)
    message_id = queue.send('{"order": 1}')
    # WHEN a consumer receives it
    [msg] = queue.receive(1)
    # THEN it has the same id and body, SQS's MD5 of the body and SQS's system attributes
    assert msg.message_id == message_id
    assert msg.body == '{"order": 1}'
    assert msg.md5_of_body == hashlib.md5(b'{"order": 1}', usedforsecurity=False).hexdigest()
    assert msg.attributes["ApproximateReceiveCount"] == "1"
    assert before_ms - 1000 <= int(msg.attributes["SentTimestamp"]) <= time.time() * 1000 + 1000
    assert int(msg.attributes["ApproximateFirstReceiveTimestamp"]) >= int(
        msg.attributes["SentTimestamp"]
    )
    assert msg.attributes["SenderId"]


def test_message_attributes_travel_with_the_message(queue: Queue) -> None:
    # GIVEN a message sent with String and Number attributes in SQS's shape
    attrs = {
        "tenant": {"DataType": "String", "StringValue": "acme"},
        "amount": {"DataType": "Number", "StringValue": "12.5"},
    }
    queue.send("paid", message_attributes=attrs)
    # WHEN it is received THEN the attributes come back as they were sent
    [msg] = queue.receive(1)
    assert msg.message_attributes == attrs


def test_a_received_message_stays_hidden_until_made_visible_again(queue: Queue) -> None:
    # GIVEN a message received by one consumer
    queue.send("work")
    [first] = queue.receive(1)
    # WHEN another consumer polls THEN it gets nothing: the message is in flight
    assert queue.receive(10) == []
    stats = queue.stats()
    assert (stats.visible, stats.in_flight) == (0, 1)
    # WHEN the first consumer gives it back (visibility 0)
    queue.change_visibility(first.receipt_handle, 0)
    _tick()
    # THEN it is delivered again, counted as a second receive, under a new receipt handle
    [second] = queue.receive(1)
    assert second.message_id == first.message_id
    assert second.attributes["ApproximateReceiveCount"] == "2"
    assert second.receipt_handle != first.receipt_handle
    assert (
        second.attributes["ApproximateFirstReceiveTimestamp"]
        == first.attributes["ApproximateFirstReceiveTimestamp"]
    )


def test_a_deleted_message_is_never_delivered_again(queue: Queue) -> None:
    # GIVEN a received message
    queue.send("once")
    [msg] = queue.receive(1, visibility_timeout_s=0)
    # WHEN it is deleted (twice: a retried delete must not fail)
    queue.delete(msg.receipt_handle)
    queue.delete(msg.receipt_handle)
    _tick()
    # THEN no consumer sees it again and the queue is empty
    assert queue.receive(10) == []
    stats = queue.stats()
    assert (stats.visible, stats.in_flight, stats.delayed) == (0, 0, 0)


def test_a_batch_of_ten_is_sent_received_and_deleted_together(queue: Queue) -> None:
    # GIVEN ten messages sent in one batch
    bodies = [f"m{i}" for i in range(10)]
    ids = queue.send_batch(bodies)
    assert len(set(ids)) == 10
    # WHEN a consumer receives up to ten at a time
    got = _receive_all(queue, 10)
    # THEN it gets each message once, with the ids the send returned
    assert sorted(m.body for m in got) == sorted(bodies)
    assert {m.message_id for m in got} == set(ids)
    # AND one batch delete empties the queue
    queue.delete_batch([m.receipt_handle for m in got])
    stats = queue.stats()
    assert (stats.visible, stats.in_flight) == (0, 0)


@pytest.mark.parametrize("n", [0, 11])
def test_batches_outside_one_to_ten_entries_are_refused(queue: Queue, n: int) -> None:
    with pytest.raises(QueueRequestError, match="1 to 10"):
        queue.send_batch(["x"] * n)
    with pytest.raises(QueueRequestError, match="1 to 10"):
        queue.delete_batch(["x"] * n)
    assert queue.stats().visible == 0


def test_a_message_over_256_kib_is_refused_naming_the_limit(queue: Queue) -> None:
    # GIVEN a body of exactly 256 KiB, and one a byte larger
    # WHEN both are sent THEN the first is accepted and the second refused with the limit named
    queue.send("a" * MAX_MESSAGE_BYTES)
    with pytest.raises(QueueRequestError, match=r"262,144 bytes \(256 KiB\)"):
        queue.send("a" * (MAX_MESSAGE_BYTES + 1))
    # AND attributes count toward the same limit, as on SQS
    with pytest.raises(QueueRequestError, match="256 KiB"):
        queue.send(
            "a" * (MAX_MESSAGE_BYTES - 10),
            message_attributes={"k": {"DataType": "String", "StringValue": "0123456789"}},
        )
    # AND a batch whose total exceeds it is refused whole
    with pytest.raises(QueueRequestError, match="whole batch"):
        queue.send_batch(["a" * (MAX_MESSAGE_BYTES // 2)] * 3)
    assert queue.stats().visible == 1


@pytest.mark.parametrize(
    ("kwargs", "limit"),
    [
        ({"max_messages": 0}, "max_messages"),
        ({"max_messages": 11}, "max_messages"),
        ({"wait_s": 21}, "wait_s"),
        ({"visibility_timeout_s": 43_201}, "visibility_timeout_s"),
    ],
)
def test_receive_arguments_outside_sqs_limits_are_refused(
    queue: Queue, kwargs: dict[str, int], limit: str
) -> None:
    with pytest.raises(QueueRequestError, match=limit):
        queue.receive(**kwargs)


def test_sends_outside_sqs_limits_are_refused(queue: Queue) -> None:
    with pytest.raises(QueueRequestError, match="delay_s"):
        queue.send("x", delay_s=901)
    with pytest.raises(QueueRequestError, match="at least 1 character"):
        queue.send("")
    with pytest.raises(QueueRequestError, match="binary attributes"):
        queue.send("x", message_attributes={"k": {"DataType": "Binary", "StringValue": "x"}})
    assert queue.stats().visible == 0


def test_a_message_received_more_than_max_receive_count_moves_to_the_dlq(
    service: QueueService,
) -> None:
    # GIVEN a queue that allows two receives before dead-lettering
    q = service.ensure(
        QueueConfig(name="payments", max_receive_count=2, dead_letter_queue="payments-dlq")
    )
    attrs = {"tenant": {"DataType": "String", "StringValue": "acme"}}
    message_id = q.send("poison", message_attributes=attrs)
    # WHEN consumers fail it twice (visibility 0: back at once)
    for count in ("1", "2"):
        [msg] = q.receive(1, visibility_timeout_s=0)
        assert msg.attributes["ApproximateReceiveCount"] == count
        _tick()
    # THEN the third receive does not deliver it: it moved to the dead-letter queue
    assert q.receive(10) == []
    dlq = service.get("payments-dlq")
    assert dlq.stats().visible == 1
    assert q.stats().visible + q.stats().in_flight == 0
    # AND it kept its body, id and message attributes
    [dead] = dlq.receive(1)
    assert (dead.body, dead.message_id, dead.message_attributes) == ("poison", message_id, attrs)
    assert q.stats().dead_letter_queue == "payments-dlq"


def test_redrive_moves_dead_letters_back_with_a_fresh_receive_count(
    service: QueueService,
) -> None:
    # GIVEN two messages that ended in the dead-letter queue
    q = service.ensure(QueueConfig(name="jobs", max_receive_count=1, dead_letter_queue="jobs-dlq"))
    q.send_batch(["a", "b"])
    assert len(_receive_all(q, 2, visibility_timeout_s=0)) == 2
    _tick()
    assert q.receive(10) == []
    assert service.get("jobs-dlq").stats().visible == 2
    # WHEN the DLQ is redriven (its only source is found from the queues' configuration)
    moved = service.redrive("jobs-dlq")
    # THEN both are back in the source queue, received as if for the first time
    assert moved == 2
    assert service.get("jobs-dlq").stats().visible == 0
    back = _receive_all(q, 2)
    assert sorted(m.body for m in back) == ["a", "b"]
    assert {m.attributes["ApproximateReceiveCount"] for m in back} == {"1"}


def test_a_message_a_batch_consumer_rejected_waits_with_its_reason_and_redrives_unchanged(
    service: QueueService,
) -> None:
    from aibackend.events.batches import CONTRACT_REJECTED, Rejected, Rejections

    # GIVEN a rule-filled queue (as `[[queues.events]]` makes it) whose consumer rejects a
    # message it cannot read (`aibackend.events.batches.Rejections`, on SQS or locally)
    q = service.ensure(
        QueueConfig(name="views", max_receive_count=3, dead_letter_queue="views-dlq")
    )
    reason = "UnknownVersionError: unknown schema_version '9'; known: 1"
    body = '{"id": "e-1", "detail-type": "Product Viewed", "detail": {"schema_version": "9"}}'
    assert Rejections("views", lambda: service).send([Rejected("m-1", body, reason)]) == []
    # THEN the DLQ holds it as it came, the reason in its attributes
    [kept] = service.get("views-dlq").receive(10, visibility_timeout_s=0)
    assert kept.body == body
    attributes = {k: v["StringValue"] for k, v in kept.message_attributes.items()}
    assert attributes == {"ERROR_CODE": CONTRACT_REJECTED, "ERROR_MESSAGE": reason}
    # AND once the consumer reads that version, a redrive hands it back unchanged
    _tick()
    assert service.redrive("views-dlq") == 1
    [back] = _receive_all(q, 1)
    assert back.body == body


def test_redrive_needs_a_target_when_several_queues_share_a_dlq(service: QueueService) -> None:
    # GIVEN two queues that dead-letter into the same DLQ, which holds a message
    service.ensure(QueueConfig(name="a", max_receive_count=3, dead_letter_queue="shared-dlq"))
    service.ensure(QueueConfig(name="b", max_receive_count=3, dead_letter_queue="shared-dlq"))
    service.get("shared-dlq").send("lost")
    # WHEN it is redriven without a target THEN the call is refused, naming both sources
    with pytest.raises(QueueRequestError, match="pass `to`") as err:
        service.redrive("shared-dlq")
    assert "a, b" in str(err.value)
    # AND with a target the message goes there
    assert service.redrive("shared-dlq", to="b") == 1
    [msg] = service.get("b").receive(1)
    assert msg.body == "lost"


def test_an_unknown_queue_is_not_found_and_the_error_names_the_known_ones(
    service: QueueService,
) -> None:
    service.ensure(QueueConfig(name="known-one"))
    with pytest.raises(QueueNotFoundError, match="known-one") as err:
        service.get("missing")
    assert "missing" in str(err.value)


def test_list_reports_every_queue_with_its_counts_and_dlq(service: QueueService) -> None:
    # GIVEN a queue with a DLQ and two messages, one of them in flight
    q = service.ensure(QueueConfig(name="clicks", max_receive_count=5, dead_letter_queue="dlq"))
    q.send_batch(["1", "2"])
    q.receive(1)
    # WHEN the service lists its queues
    stats = {s.name: s for s in service.list()}
    # THEN both queues appear (the DLQ was created by ensure) with their counts
    assert set(stats) == {"clicks", "dlq"}
    assert (stats["clicks"].visible, stats["clicks"].in_flight) == (1, 1)
    assert stats["clicks"].dead_letter_queue == "dlq"
    assert stats["dlq"].dead_letter_queue is None


def test_a_delayed_message_is_counted_as_delayed_and_arrives_by_long_poll(queue: Queue) -> None:
    # GIVEN a message sent with a one-second delay
    queue.send("later", delay_s=1)
    # THEN it is counted as delayed and not delivered yet
    stats = queue.stats()
    assert (stats.visible, stats.delayed) == (0, 1)
    assert queue.receive(1) == []
    # WHEN a consumer long-polls THEN it gets the message once the delay is over
    t0 = time.monotonic()
    [msg] = queue.receive(1, wait_s=5)
    assert msg.body == "later"
    assert 0.3 < time.monotonic() - t0 < 4.5


def test_a_long_poll_on_an_empty_queue_waits_then_returns_nothing(queue: Queue) -> None:
    t0 = time.monotonic()
    assert queue.receive(10, wait_s=1) == []
    assert time.monotonic() - t0 >= 0.9


def test_handles_that_hold_no_message_are_refused(queue: Queue) -> None:
    # GIVEN a handle never issued by the queue THEN delete refuses it
    with pytest.raises(ReceiptHandleError):
        queue.delete("not-a-receipt-handle")
    # GIVEN a message deleted under its handle
    queue.send("x")
    [msg] = queue.receive(1)
    queue.delete(msg.receipt_handle)
    # WHEN its visibility is changed with that handle THEN the change is refused
    with pytest.raises(ReceiptHandleError):
        queue.change_visibility(msg.receipt_handle, 10)


def test_ensure_is_idempotent_and_keeps_queued_messages(service: QueueService) -> None:
    # GIVEN a queue holding a message
    service.ensure(QueueConfig(name="events")).send("kept")
    # WHEN it is ensured again with another configuration
    q = service.ensure(QueueConfig(name="events", visibility_timeout_s=5, delay_s=0))
    # THEN the message is still there
    [msg] = q.receive(1)
    assert msg.body == "kept"
