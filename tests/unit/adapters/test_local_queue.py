"""The local queue engine on its own: durability, concurrency, clocks and long polling."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from aibackend.adapters.local_queue import (
    QueueRequestError,
    ReceiptHandleError,
    SqliteQueue,
    SqliteQueueService,
)
from aibackend.ports import QueueConfig

T0 = 1_700_000_000.0


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "queues.db"


@pytest.fixture
def service(db: Path, clock: FakeClock) -> SqliteQueueService:
    return SqliteQueueService(db, clock=clock)


@pytest.fixture
def queue(service: SqliteQueueService) -> SqliteQueue:
    return service.ensure(QueueConfig(name="orders", visibility_timeout_s=30))


# -- durability ----------------------------------------------------------------------------


def test_messages_and_in_flight_state_survive_a_restart(db: Path, clock: FakeClock) -> None:
    # GIVEN three messages, one of them received (hidden for 30 s) when the service stops
    with SqliteQueueService(db, clock=clock) as svc:
        q = svc.ensure(QueueConfig(name="orders", visibility_timeout_s=30))
        q.send_batch(["a", "b", "c"])
        [in_flight] = q.receive(1)
    # WHEN the service is opened again on the same file
    with SqliteQueueService(db, clock=clock) as svc:
        q = svc.get("orders")
        # THEN the two others are waiting and the received one is still hidden
        stats = q.stats()
        assert (stats.visible, stats.in_flight) == (2, 1)
        assert sorted(m.body for m in q.receive(10, visibility_timeout_s=300)) == ["b", "c"]
        # AND once its visibility timeout passes it is delivered again, as a second receive
        clock.advance(30)
        [again] = q.receive(10)
        assert again.message_id == in_flight.message_id
        assert again.attributes["ApproximateReceiveCount"] == "2"


def test_a_crashed_process_loses_no_committed_message(db: Path) -> None:
    # GIVEN a process that sends five messages, then dies without closing anything
    script = (
        "import os, sys; from pathlib import Path\n"
        "from aibackend.adapters.local_queue import SqliteQueueService\n"
        "from aibackend.ports import QueueConfig\n"
        "q = SqliteQueueService(Path(sys.argv[1])).ensure(QueueConfig(name='orders'))\n"
        "q.send_batch([str(i) for i in range(5)])\n"
        "os._exit(9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(db)], check=False, timeout=60)
    assert proc.returncode == 9
    # WHEN another process opens the database THEN all five are there
    with SqliteQueueService(db) as svc:
        got = svc.get("orders").receive(10)
    assert sorted(m.body for m in got) == ["0", "1", "2", "3", "4"]


# -- concurrency ---------------------------------------------------------------------------


def test_concurrent_consumers_never_share_an_in_flight_message(db: Path) -> None:
    # GIVEN 300 messages, and two services on the same file (two connections, as two processes)
    first, second = SqliteQueueService(db), SqliteQueueService(db)
    q = first.ensure(QueueConfig(name="orders", visibility_timeout_s=60))
    for i in range(0, 300, 10):
        q.send_batch([str(n) for n in range(i, i + 10)])
    seen: list[str] = []
    lock = threading.Lock()

    def consume(svc: SqliteQueueService) -> None:
        mine = svc.get("orders")
        while batch := mine.receive(10):
            with lock:
                seen.extend(m.message_id for m in batch)

    # WHEN six consumer threads drain it without deleting anything
    threads = [threading.Thread(target=consume, args=(svc,)) for svc in (first, second) * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # THEN every message was received exactly once: none was handed to two consumers
    counts = Counter(seen)
    assert len(counts) == 300
    assert max(counts.values()) == 1
    first.close()
    second.close()


def test_a_long_poll_wakes_as_soon_as_another_thread_sends(db: Path) -> None:
    # GIVEN a consumer long-polling an empty queue, with polling slowed right down so that only
    # the in-process notification can wake it
    svc = SqliteQueueService(db, poll_interval_s=30)
    q = svc.ensure(QueueConfig(name="orders"))
    sender = threading.Timer(0.2, q.send, args=("hello",))
    # WHEN another thread sends a message 0.2 s later
    t0 = time.monotonic()
    sender.start()
    got = q.receive(1, wait_s=10)
    elapsed = time.monotonic() - t0
    sender.join()
    # THEN the poll returns with it right away instead of waiting out its 10 s
    assert [m.body for m in got] == ["hello"]
    assert elapsed < 2
    svc.close()


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Receive attempts (each a write transaction) per queue name, counted from now on."""
    counts = Counter[str]()
    receive_now = SqliteQueue._receive_now

    def counted(self: SqliteQueue, *args: object) -> object:
        counts[self.name] += 1
        return receive_now(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(SqliteQueue, "_receive_now", counted)
    return counts


def test_a_send_wakes_only_the_long_polls_of_its_own_queue(
    db: Path, attempts: Counter[str]
) -> None:
    # GIVEN a consumer long-polling an empty queue, with polling slowed right down, and the
    # attempts it makes counted
    svc = SqliteQueueService(db, poll_interval_s=30)
    idle = svc.ensure(QueueConfig(name="idle"))
    busy = svc.ensure(QueueConfig(name="busy"))
    poll = threading.Thread(target=idle.receive, args=(1,), kwargs={"wait_s": 1.0})
    # WHEN another queue gets 50 messages while it waits
    poll.start()
    for i in range(50):
        busy.send(f"m{i}")
    poll.join()
    # THEN the poll was never woken to look (its first attempt only; after it, at most one
    # more when its wait ended), where every send used to wake it into a write transaction
    assert attempts["idle"] <= 2
    # AND a send to its own queue still wakes it at once
    late = threading.Timer(0.2, idle.send, args=("mine",))
    late.start()
    t0 = time.monotonic()
    got = idle.receive(1, wait_s=10)
    late.join()
    assert [m.body for m in got] == ["mine"]
    assert time.monotonic() - t0 < 5
    svc.close()


def test_a_long_poll_of_an_idle_queue_does_not_keep_trying_to_receive(
    db: Path, attempts: Counter[str]
) -> None:
    # GIVEN a long poll of an empty queue that checks for other processes' sends every 10 ms
    svc = SqliteQueueService(db, poll_interval_s=0.01)
    q = svc.ensure(QueueConfig(name="quiet"))
    # WHEN it waits half a second and nothing happens
    got = q.receive(1, wait_s=0.5)
    # THEN it tried to receive once (a write transaction), not once per poll (~50 times)
    assert got == []
    assert attempts["quiet"] == 1
    svc.close()


def test_a_long_poll_gets_a_message_whose_visibility_ends_while_it_waits(db: Path) -> None:
    # GIVEN a message received once (hidden for the queue's 30 s) and a long poll waiting
    clock = FakeClock()
    svc = SqliteQueueService(db, clock=clock, poll_interval_s=0.01)
    q = svc.ensure(QueueConfig(name="orders", visibility_timeout_s=30))
    q.send("retry me")
    assert [m.body for m in q.receive(1)] == ["retry me"]
    found: list[list[str]] = []
    poll = threading.Thread(target=lambda: found.append([m.body for m in q.receive(1, wait_s=5)]))
    poll.start()
    # WHEN its visibility timeout passes (no send, no commit: only time)
    time.sleep(0.1)
    clock.advance(30)
    poll.join()
    # THEN the waiting poll receives it again
    assert found == [["retry me"]]
    svc.close()


def test_a_long_poll_sees_another_processes_send_within_the_poll_interval(db: Path) -> None:
    # GIVEN a consumer long-polling through one service, and a producer with its own service
    # (another connection and no shared notification, like another process)
    consumer = SqliteQueueService(db, poll_interval_s=0.05)
    producer = SqliteQueueService(db)
    q = consumer.ensure(QueueConfig(name="orders"))
    sender = threading.Timer(0.2, producer.get("orders").send, args=("from afar",))
    # WHEN the producer sends
    t0 = time.monotonic()
    sender.start()
    got = q.receive(1, wait_s=10)
    sender.join()
    # THEN the consumer picks it up on its next poll
    assert [m.body for m in got] == ["from afar"]
    assert time.monotonic() - t0 < 2
    consumer.close()
    producer.close()


# -- clock: visibility, delays, retention --------------------------------------------------


def test_visibility_timeout_ends_exactly_on_time(queue: SqliteQueue, clock: FakeClock) -> None:
    # GIVEN a message received with the queue's 30 s visibility timeout
    queue.send("x")
    queue.receive(1)
    # WHEN 29.9 s pass THEN it is still hidden
    clock.advance(29.9)
    assert queue.receive(1) == []
    # WHEN the timeout ends THEN it is delivered again
    clock.advance(0.1)
    assert [m.body for m in queue.receive(1)] == ["x"]


def test_visibility_override_and_change_visibility_move_the_deadline(
    queue: SqliteQueue, clock: FakeClock
) -> None:
    # GIVEN a message received with a 5 s visibility override
    queue.send("x")
    [msg] = queue.receive(1, visibility_timeout_s=5)
    # WHEN the consumer extends it to 60 s from now, 4 s in
    clock.advance(4)
    queue.change_visibility(msg.receipt_handle, 60)
    # THEN it stays hidden past the original 5 s and returns after the new deadline
    clock.advance(59)
    assert queue.receive(1) == []
    clock.advance(1)
    assert len(queue.receive(1)) == 1


def test_timestamps_come_from_the_injected_clock(queue: SqliteQueue, clock: FakeClock) -> None:
    queue.send("x")
    clock.advance(2.5)
    [msg] = queue.receive(1, visibility_timeout_s=0)
    clock.advance(10)
    [again] = queue.receive(1)
    assert msg.attributes["SentTimestamp"] == str(int(T0 * 1000))
    assert msg.attributes["ApproximateFirstReceiveTimestamp"] == str(int((T0 + 2.5) * 1000))
    assert again.attributes["ApproximateFirstReceiveTimestamp"] == str(int((T0 + 2.5) * 1000))
    assert msg.attributes["SenderId"] == "local"


def test_queue_delay_applies_unless_the_message_sets_its_own(
    service: SqliteQueueService, clock: FakeClock
) -> None:
    # GIVEN a queue whose messages wait 60 s before delivery
    q = service.ensure(QueueConfig(name="slow", delay_s=60))
    # WHEN one message uses the queue's delay and another overrides it with 0
    q.send("delayed")
    q.send("now", delay_s=0)
    # THEN only the second is delivered at once, and the first counts as delayed
    assert [m.body for m in q.receive(10, visibility_timeout_s=600)] == ["now"]
    stats = q.stats()
    assert (stats.delayed, stats.in_flight) == (1, 1)
    # AND the first arrives when its delay is over
    clock.advance(59)
    assert q.receive(10) == []
    clock.advance(1)
    assert [m.body for m in q.receive(10)] == ["delayed"]


def test_messages_past_retention_are_dropped(service: SqliteQueueService, clock: FakeClock) -> None:
    # GIVEN a queue that keeps messages for 60 s, and a message sent then
    q = service.ensure(QueueConfig(name="ephemeral", retention_s=60))
    q.send("old")
    # WHEN a newer message arrives after the old one expired
    clock.advance(61)
    q.send("fresh")
    # THEN only the fresh one is delivered or counted
    assert q.stats().visible == 1
    assert [m.body for m in q.receive(10, visibility_timeout_s=10)] == ["fresh"]
    # AND the old one never comes back, while the fresh one does after its visibility timeout
    clock.advance(10)
    assert [m.body for m in q.receive(10)] == ["fresh"]
    assert q.stats().in_flight == 1


def test_messages_are_delivered_oldest_first(queue: SqliteQueue, clock: FakeClock) -> None:
    for i in range(5):
        queue.send(f"m{i}")
        clock.advance(1)
    assert [m.body for m in queue.receive(3)] == ["m0", "m1", "m2"]
    assert [m.body for m in queue.receive(3)] == ["m3", "m4"]


# -- receipt handles -----------------------------------------------------------------------


def test_a_superseded_receipt_handle_does_not_delete_the_message(
    queue: SqliteQueue, clock: FakeClock
) -> None:
    # GIVEN a message received, timed out and received again by another consumer
    queue.send("x")
    [old] = queue.receive(1)
    clock.advance(30)
    [current] = queue.receive(1)
    # WHEN the first consumer finally deletes it with its old handle
    queue.delete(old.receipt_handle)
    # THEN the delete is ignored: the message stays with the consumer that holds it now
    assert queue.stats().in_flight == 1
    with pytest.raises(ReceiptHandleError, match="received again"):
        queue.change_visibility(old.receipt_handle, 0)
    # AND the current handle deletes it
    queue.delete(current.receipt_handle)
    clock.advance(30)
    assert queue.receive(1) == []


def test_a_handle_from_another_queue_deletes_nothing(service: SqliteQueueService) -> None:
    a = service.ensure(QueueConfig(name="a"))
    b = service.ensure(QueueConfig(name="b"))
    a.send("x")
    [msg] = a.receive(1)
    b.delete(msg.receipt_handle)
    assert a.stats().in_flight == 1


# -- dead-letter queue and configuration ---------------------------------------------------


def test_a_dead_letter_keeps_its_id_body_attributes_and_send_time(
    service: SqliteQueueService, clock: FakeClock
) -> None:
    # GIVEN a message that failed its one allowed receive
    q = service.ensure(QueueConfig(name="q", max_receive_count=1, dead_letter_queue="q-dlq"))
    attrs = {"kind": {"DataType": "String", "StringValue": "refund"}}
    message_id = q.send("body", message_attributes=attrs)
    q.receive(1)
    clock.advance(30)
    # WHEN the next receive meets it THEN it lands in the DLQ with everything it carried
    assert q.receive(1) == []
    [dead] = service.get("q-dlq").receive(1)
    assert (dead.message_id, dead.body, dead.message_attributes) == (message_id, "body", attrs)
    assert dead.attributes["SentTimestamp"] == str(int(T0 * 1000))


def test_a_dlq_move_does_not_cost_the_consumer_its_batch(
    service: SqliteQueueService, clock: FakeClock
) -> None:
    # GIVEN a poison message first in line, followed by three good ones
    q = service.ensure(QueueConfig(name="q", max_receive_count=1, dead_letter_queue="q-dlq"))
    q.send("poison")
    q.receive(1, visibility_timeout_s=0)
    clock.advance(1)
    q.send_batch(["g1", "g2", "g3"])
    # WHEN a consumer asks for three THEN it gets the three good ones in the same call
    assert [m.body for m in q.receive(3)] == ["g1", "g2", "g3"]
    assert service.get("q-dlq").stats().visible == 1


def test_ensure_updates_the_configuration_of_an_existing_queue(
    service: SqliteQueueService, clock: FakeClock
) -> None:
    # GIVEN a queue reconfigured from 30 s to 5 s visibility
    service.ensure(QueueConfig(name="q", visibility_timeout_s=30))
    q = service.ensure(QueueConfig(name="q", visibility_timeout_s=5))
    # WHEN a message is received THEN it comes back after 5 s
    q.send("x")
    q.receive(1)
    clock.advance(5)
    assert len(q.receive(1)) == 1


@pytest.mark.parametrize(
    ("config", "complaint"),
    [
        (QueueConfig(name="q", max_receive_count=3), "together"),
        (QueueConfig(name="q", dead_letter_queue="dlq"), "together"),
        (QueueConfig(name="q", max_receive_count=3, dead_letter_queue="q"), "its own"),
        (QueueConfig(name="bad name!"), "letters, digits"),
        (QueueConfig(name="q", visibility_timeout_s=50_000), "visibility_timeout_s"),
        (QueueConfig(name="q", retention_s=10), "retention_s"),
        (QueueConfig(name="q", delay_s=901), "delay_s"),
    ],
)
def test_configurations_sqs_would_refuse_are_refused(
    service: SqliteQueueService, config: QueueConfig, complaint: str
) -> None:
    with pytest.raises(QueueRequestError, match=complaint):
        service.ensure(config)
    assert service.list() == []


def test_redrive_of_a_dlq_no_queue_uses_needs_a_target(service: SqliteQueueService) -> None:
    service.ensure(QueueConfig(name="orphans")).send("x")
    service.ensure(QueueConfig(name="home"))
    with pytest.raises(QueueRequestError, match="0 queues"):
        service.redrive("orphans")
    assert service.redrive("orphans", to="home") == 1
    assert service.get("home").stats().visible == 1


@pytest.mark.parametrize("body", ["\x00null", "bell\x07", "lone \ud800 surrogate"])
def test_bodies_with_characters_sqs_refuses_are_refused(queue: SqliteQueue, body: str) -> None:
    with pytest.raises(QueueRequestError, match="SQS accepts only"):
        queue.send(body)


def test_peek_shows_the_oldest_messages_without_receiving_them(
    queue: SqliteQueue, clock: FakeClock
) -> None:
    # GIVEN three messages, one of them received (in flight)
    for body in ("a", "b", "c"):
        queue.send(body, message_attributes={"reason": {"DataType": "String", "StringValue": body}})
        clock.advance(1)
    [received] = queue.receive(1)
    # WHEN the queue is peeked
    peeked = queue.peek(limit=2)
    # THEN the two oldest come back, in flight or not, with their attributes
    assert [(m.body, m.visible, m.receive_count) for m in peeked] == [
        ("a", False, 1),
        ("b", True, 0),
    ]
    assert peeked[1].attributes == {"reason": {"DataType": "String", "StringValue": "b"}}
    # AND nothing moved: no receive count, no visibility change
    assert [(m.body, m.receive_count) for m in queue.peek()] == [("a", 1), ("b", 0), ("c", 0)]
    assert [m.body for m in queue.receive(10)] == ["b", "c"]
    assert received.body == "a"


def test_a_deleted_message_is_remembered_with_when_for_an_hour(db: Path, clock: FakeClock) -> None:
    import sqlite3

    from aibackend.adapters.local_queue import DONE_KEPT_S

    # GIVEN two messages, one consumed (received and deleted) and one only received
    with SqliteQueueService(db, clock=clock) as service:
        q = service.ensure(QueueConfig(name="jobs"))
        done_id, kept_id = q.send_batch(["a", "b"])
        received = {m.message_id: m for m in q.receive(10)}
        q.delete(received[done_id].receipt_handle)
        deleted_at = clock()

        def done() -> dict[str, float]:
            with sqlite3.connect(db) as c:
                return dict(c.execute("SELECT id, done_at FROM queue_done").fetchall())

        # THEN only the consumed one is remembered, with the time its consumer deleted it
        assert done() == {done_id: deleted_at}
        # AND an hour later, the next deletion forgets it
        clock.advance(DONE_KEPT_S + 61)
        q.change_visibility(received[kept_id].receipt_handle, 0)
        [again] = q.receive(10)
        q.delete(again.receipt_handle)
        assert done() == {kept_id: clock()}
