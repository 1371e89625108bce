"""The local event bus: routing, input paths, Lambda-style retries and on-failure records,
durability across restarts, replay, and several dispatchers sharing one file.

Queues are a tiny in-test fake of the `QueueService` port, so these tests do not depend on the
local queue engine.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aibackend.adapters.local_bus import BusStats, LocalEventBus, Target
from aibackend.ports import PutEvent

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC).timestamp()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeQueue:
    def __init__(self, name: str) -> None:
        self.name = name
        self.messages: list[tuple[str, dict[str, dict[str, str]]]] = []
        self.failures_left = 0
        #: Sizes of the `send_batch` calls.
        self.batches: list[int] = []

    def send(
        self,
        body: str,
        *,
        delay_s: int = 0,
        message_attributes: dict[str, dict[str, str]] | None = None,
    ) -> str:
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("queue unavailable")
        self.messages.append((body, message_attributes or {}))
        return str(len(self.messages))

    def send_batch(self, bodies: list[str], *, delay_s: int = 0) -> list[str]:
        """One call for them all, as SQS's SendMessageBatch: fails (all of them) as `send`."""
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("queue unavailable")
        self.batches.append(len(bodies))
        return [self.send(b) for b in bodies]

    def bodies(self) -> list[Any]:
        return [json.loads(b) for b, _ in self.messages]


class FakeQueues:
    def __init__(self) -> None:
        self.queues: dict[str, FakeQueue] = {}

    def get(self, name: str) -> FakeQueue:
        return self.queues.setdefault(name, FakeQueue(name))


class Recorder:
    """A `deliver` callable: records (function, payload); fails the first `fail` calls."""

    def __init__(self, fail: int = 0, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail = fail
        self.error = error or RuntimeError("model endpoint timed out")
        self.lock = threading.Lock()

    def __call__(self, target: Target, payload: Any) -> None:
        with self.lock:
            self.calls.append((target.name, payload))
            if self.fail:
                self.fail -= 1
                raise self.error


def fn(name: str = "fraud_score", **kw: Any) -> Target:
    return Target(kind="function", name=name, **kw)


def tx(amount: float = 120.0, **detail: Any) -> PutEvent:
    return PutEvent(
        source="aib.payments",
        detail_type="Transaction Created",
        detail={"amount": amount, "currency": "EUR", **detail},
    )


TX_PATTERN = {"source": ["aib.payments"], "detail-type": ["Transaction Created"]}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queues() -> FakeQueues:
    return FakeQueues()


@pytest.fixture
def make_bus(
    tmp_path: Path, clock: Clock, queues: FakeQueues
) -> Iterator[Callable[..., LocalEventBus]]:
    made: list[LocalEventBus] = []

    def make(deliver: Callable[[Target, Any], None] | None = None, **kw: Any) -> LocalEventBus:
        kw.setdefault("clock", clock)
        kw.setdefault("retry_delays_s", (1.0, 2.0))
        bus = LocalEventBus(
            tmp_path / "events.db", deliver=deliver or Recorder(), queues=queues, **kw
        )
        made.append(bus)
        return bus

    yield make
    for bus in made:
        bus.close()


# -- routing ---------------------------------------------------------------------------------


def test_matching_event_reaches_the_function_with_the_eventbridge_envelope(
    make_bus: Callable[..., LocalEventBus],
) -> None:
    # GIVEN a rule for transactions over 100 EUR targeting a function
    calls = Recorder()
    bus = make_bus(calls)
    pattern = {**TX_PATTERN, "detail": {"amount": [{"numeric": [">", 100]}]}}
    bus.put_rule("big-tx", bus="aib", pattern=pattern, targets=[fn()])
    # WHEN a big and a small transaction are put
    result = bus.put_events([tx(500.0), tx(5.0)])
    bus.run_due()
    # THEN both are accepted, and only the big one is delivered, in EventBridge's envelope
    assert result.failed_count == 0
    assert all(result.event_ids)
    assert len(calls.calls) == 1
    name, payload = calls.calls[0]
    assert name == "fraud_score"
    assert payload == {
        "version": "0",
        "id": result.event_ids[0],
        "detail-type": "Transaction Created",
        "source": "aib.payments",
        "account": "000000000000",
        "time": "2024-05-01T10:00:00Z",
        "region": "local",
        "resources": [],
        "detail": {"amount": 500.0, "currency": "EUR"},
    }
    assert bus.stats().model_dump() == {"pending": 0, "in_flight": 0, "delivered": 1, "failed": 0}


def test_each_event_reaches_exactly_the_rules_whose_patterns_match_it_whatever_their_source(
    make_bus: Callable[..., LocalEventBus],
) -> None:
    # GIVEN rules naming their sources exactly (one or two), by prefix, by anything-but, and
    # none at all (the bus looks only at the rules an event's source leaves, then matches)
    calls = Recorder()
    bus = make_bus(calls)
    rules = {
        "payments": {"source": ["aib.payments"]},
        "shop-or-iot": {"source": ["aib.shop", "aib.iot"]},
        "prefix": {"source": [{"prefix": "aib.s"}]},
        "not-iot": {"source": [{"anything-but": ["aib.iot"]}]},
        "any-scored": {"detail-type": ["Scored"]},
    }
    for name, pattern in rules.items():
        bus.put_rule(name, bus="aib", pattern=pattern, targets=[fn(name)])
    # WHEN events of several sources and types are put
    events = {
        "payments": PutEvent(source="aib.payments", detail_type="Created", detail={}),
        "shop": PutEvent(source="aib.shop", detail_type="Scored", detail={}),
        "iot": PutEvent(source="aib.iot", detail_type="Reading", detail={}),
        "other": PutEvent(source="partner.x", detail_type="Scored", detail={}),
    }
    ids = dict(zip(events, bus.put_events(list(events.values())).event_ids, strict=True))
    bus.run_due()
    # THEN each reached exactly the rules whose patterns match it
    got: dict[str, set[str]] = {}
    for name, payload in calls.calls:
        got.setdefault(next(k for k, i in ids.items() if i == payload["id"]), set()).add(name)
    assert got == {
        "payments": {"payments", "not-iot"},
        "shop": {"shop-or-iot", "prefix", "not-iot", "any-scored"},
        "iot": {"shop-or-iot"},
        "other": {"not-iot", "any-scored"},
    }


def test_rules_only_see_events_of_their_bus(make_bus: Callable[..., LocalEventBus]) -> None:
    calls = Recorder()
    bus = make_bus(calls)
    bus.put_rule("on-default", bus="default", pattern=TX_PATTERN, targets=[fn()])
    bus.put_events([tx()])  # the platform bus "aib"
    assert bus.run_due() == 0
    assert calls.calls == []


def test_explicit_time_and_resources_are_kept(make_bus: Callable[..., LocalEventBus]) -> None:
    calls = Recorder()
    bus = make_bus(calls)
    bus.put_rule("r", bus="aib", pattern={"resources": [{"prefix": "arn:aws:s3"}]}, targets=[fn()])
    when = datetime(2023, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    bus.put_events([tx().model_copy(update={"time": when, "resources": ("arn:aws:s3:::b",)})])
    bus.run_due()
    assert calls.calls[0][1]["time"] == "2023-01-02T03:04:05Z"
    assert calls.calls[0][1]["resources"] == ["arn:aws:s3:::b"]


def test_input_path_selects_the_part_delivered(make_bus: Callable[..., LocalEventBus]) -> None:
    # GIVEN targets receiving `$.detail` and `$.detail.card`
    calls = Recorder()
    bus = make_bus(calls)
    bus.put_rule(
        "tx",
        bus="aib",
        pattern=TX_PATTERN,
        targets=[fn("a", input_path="$.detail"), fn("b", input_path="$.detail.card")],
    )
    # WHEN a transaction is put
    bus.put_events([tx(card={"country": "FR"})])
    bus.run_due()
    # THEN each function gets its slice
    got = dict(calls.calls)
    assert got["a"] == {"amount": 120.0, "currency": "EUR", "card": {"country": "FR"}}
    assert got["b"] == {"country": "FR"}


def test_queue_target_receives_the_event_as_json(
    make_bus: Callable[..., LocalEventBus], queues: FakeQueues
) -> None:
    bus = make_bus()
    bus.put_rule(
        "to-queue", bus="aib", pattern=TX_PATTERN, targets=[Target(kind="queue", name="tx-q")]
    )
    ids = bus.put_events([tx()]).event_ids
    bus.run_due()
    (body,) = queues.get("tx-q").bodies()
    assert body["id"] == ids[0]
    assert body["detail"] == {"amount": 120.0, "currency": "EUR"}
    # AND the delivery names the message it became (what `aib simulate` times consumers by)
    with sqlite3.connect(bus.db_path) as c:
        rows = c.execute("SELECT state, message_id FROM bus_deliveries").fetchall()
    assert rows == [("delivered", "1")]


def test_a_bus_file_from_before_message_ids_gains_the_column(tmp_path: Path) -> None:
    # GIVEN a bus file whose deliveries table has no message_id column (an older aib dev)
    db = tmp_path / "events.db"
    with sqlite3.connect(db) as c:
        c.execute(
            "CREATE TABLE bus_deliveries (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT "
            "NOT NULL, replay_name TEXT, bus TEXT NOT NULL, rule TEXT NOT NULL, target TEXT "
            "NOT NULL, request_id TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', "
            "attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, due REAL NOT NULL, "
            "claim TEXT, last_error TEXT, condition TEXT, failure TEXT, finished_at REAL)"
        )
    # WHEN the bus opens it THEN the column is there
    LocalEventBus(db, deliver=Recorder()).close()
    with sqlite3.connect(db) as c:
        columns = {r[1] for r in c.execute("PRAGMA table_info(bus_deliveries)")}
    assert "message_id" in columns


def test_put_rule_replaces_and_validates(make_bus: Callable[..., LocalEventBus]) -> None:
    # GIVEN a rule
    calls = Recorder()
    bus = make_bus(calls)
    bus.put_rule("r", bus="aib", pattern={"source": ["nope"]}, targets=[fn()])
    # WHEN it is put again with another pattern
    bus.put_rule("r", bus="aib", pattern=TX_PATTERN, targets=[fn("other")])
    # THEN there is still one rule, the new one, and events follow it
    (rule,) = bus.rules()
    assert rule.pattern == TX_PATTERN
    assert [t.name for t in rule.targets] == ["other"]
    bus.put_events([tx()])
    bus.run_due()
    assert [n for n, _ in calls.calls] == ["other"]
    # AND bad rules are refused with a message saying what to fix
    with pytest.raises(ValueError, match=r"detail\.amount\[0\]\.numeric"):
        bus.put_rule(
            "bad", bus="aib", pattern={"detail": {"amount": [{"numeric": [">"]}]}}, targets=[fn()]
        )
    with pytest.raises(ValueError, match="does not exist"):
        bus.put_rule("r2", bus="nobus", pattern=TX_PATTERN, targets=[fn()])
    with pytest.raises(ValueError, match="1 to 64"):
        bus.put_rule("bad name!", bus="aib", pattern=TX_PATTERN, targets=[fn()])
    assert bus.delete_rule("r", bus="aib") is True
    assert bus.rules() == []


def test_rules_put_by_another_instance_apply_to_events_put_here(
    make_bus: Callable[..., LocalEventBus],
) -> None:
    # GIVEN `aib dev` (one instance) owns the rules, a publisher process opens its own
    calls = Recorder()
    runtime = make_bus(calls)
    publisher = make_bus()
    publisher.put_events([tx()])  # loads the (empty) rule set
    runtime.put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[fn()])
    # WHEN the publisher puts an event
    publisher.put_events([tx(7.0)])
    # THEN the runtime delivers it under the new rule
    runtime.run_due()
    assert [p["detail"]["amount"] for _, p in calls.calls] == [7.0]


# -- PutEvents validation --------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 11])
def test_put_events_takes_1_to_10_entries(make_bus: Callable[..., LocalEventBus], n: int) -> None:
    bus = make_bus()
    with pytest.raises(ValueError, match="1 to 10 entries"):
        bus.put_events([tx()] * n)


def test_bad_entries_fail_alone_and_the_others_are_accepted(
    make_bus: Callable[..., LocalEventBus],
) -> None:
    # GIVEN a batch mixing good entries with ones EventBridge refuses
    calls = Recorder()
    bus = make_bus(calls)
    bus.put_rule("all", bus="aib", pattern={"source": [{"exists": True}]}, targets=[fn()])
    entries = [
        tx(1.0),
        tx().model_copy(update={"bus": "nobus"}),
        tx().model_copy(update={"detail": {"when": {1, 2}}}),  # not JSON
        tx(padding="x" * (256 * 1024)),
        tx().model_copy(update={"source": ""}),
        tx(2.0),
    ]
    # WHEN they are put together
    result = bus.put_events(entries)
    # THEN the bad ones are reported by index with EventBridge's codes; the good ones get ids
    codes = {i: code for i, code, _ in result.failures}
    assert codes == {
        1: "ResourceNotFoundException",
        2: "MalformedDetail",
        3: "InvalidArgument",
        4: "InvalidArgument",
    }
    assert result.failed_count == 4
    assert [e is not None for e in result.event_ids] == [True, False, False, False, False, True]
    bus.run_due()
    assert [p["detail"]["amount"] for _, p in calls.calls] == [1.0, 2.0]


def test_a_batch_over_256_kb_in_total_is_refused_whole(
    make_bus: Callable[..., LocalEventBus],
) -> None:
    bus = make_bus()
    with pytest.raises(ValueError, match="Total size"):
        bus.put_events([tx(padding="x" * (100 * 1024))] * 3)


# -- retries, event age, on-failure destination ----------------------------------------------


def test_failing_function_is_retried_then_its_failure_record_goes_to_the_dlq(
    make_bus: Callable[..., LocalEventBus], clock: Clock, queues: FakeQueues
) -> None:
    # GIVEN a function that always fails, 2 retries after 1 s then 2 s, and a DLQ
    calls = Recorder(fail=99)
    bus = make_bus(calls)
    target = fn(max_attempts=2, dead_letter_queue="fraud_score-failures", input_path="$.detail")
    bus.put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[target])
    event_id = bus.put_events([tx()]).event_ids[0]
    # WHEN time passes
    assert bus.run_due() == 1  # first attempt, t=0
    assert bus.run_due(now=T0 + 0.9) == 0  # not due yet
    assert bus.stats().pending == 1
    assert bus.run_due(now=T0 + 1.0) == 1  # retry 1
    assert bus.run_due(now=T0 + 2.9) == 0
    assert bus.run_due(now=T0 + 3.0) == 1  # retry 2: the last
    # THEN it was invoked 3 times, then Lambda's on-failure record went to the DLQ
    assert len(calls.calls) == 3
    (record,) = queues.get("fraud_score-failures").bodies()
    assert record["version"] == "1.0"
    assert record["timestamp"] == "2024-05-01T10:00:03.000Z"
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestContext"]["functionArn"] == (
        "arn:aws:lambda:local:000000000000:function:fraud_score:$LATEST"
    )
    assert record["requestContext"]["requestId"]
    assert record["requestPayload"] == {"amount": 120.0, "currency": "EUR"}
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorMessage"] == "model endpoint timed out"
    assert record["responsePayload"]["errorType"] == "RuntimeError"
    # AND the delivery is kept as failed, not lost
    assert bus.stats().failed == 1
    assert bus.run_due(now=T0 + 1000) == 0
    (failure,) = bus.failures()
    assert failure["event_id"] == event_id
    assert failure["condition"] == "RetriesExhausted"
    assert failure["record"] == record


def test_a_retry_that_succeeds_is_delivered_without_a_failure_record(
    make_bus: Callable[..., LocalEventBus], queues: FakeQueues
) -> None:
    calls = Recorder(fail=1)
    bus = make_bus(calls)
    bus.put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[fn(dead_letter_queue="dlq")])
    bus.put_events([tx()])
    bus.run_due()
    bus.run_due(now=T0 + 1)
    assert len(calls.calls) == 2
    assert bus.stats().delivered == 1
    assert queues.get("dlq").messages == []


def test_zero_retries_fails_on_the_first_error(
    make_bus: Callable[..., LocalEventBus], queues: FakeQueues
) -> None:
    bus = make_bus(Recorder(fail=1))
    bus.put_rule(
        "tx", bus="aib", pattern=TX_PATTERN, targets=[fn(max_attempts=0, dead_letter_queue="dlq")]
    )
    bus.put_events([tx()])
    bus.run_due()
    (record,) = queues.get("dlq").bodies()
    assert record["requestContext"]["approximateInvokeCount"] == 1


def test_a_retry_beyond_the_maximum_event_age_is_not_made(
    make_bus: Callable[..., LocalEventBus], queues: FakeQueues
) -> None:
    # GIVEN retries 30 s then 60 s apart, but events may only be 60 s old
    calls = Recorder(fail=99)
    bus = make_bus(calls, retry_delays_s=(30.0, 60.0))
    target = fn(max_attempts=2, max_event_age_s=60, dead_letter_queue="dlq")
    bus.put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[target])
    bus.put_events([tx()])
    # WHEN the first attempt and the retry at 30 s fail
    bus.run_due()
    bus.run_due(now=T0 + 30)
    # THEN the second retry (due at 90 s) is not made: the record says the event got too old
    assert len(calls.calls) == 2
    (record,) = queues.get("dlq").bodies()
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 2


def test_an_event_too_old_when_the_dispatcher_gets_to_it_is_never_invoked(
    make_bus: Callable[..., LocalEventBus], queues: FakeQueues
) -> None:
    # GIVEN an event put while no dispatcher ran for two minutes
    calls = Recorder()
    bus = make_bus(calls)
    bus.put_rule(
        "tx",
        bus="aib",
        pattern=TX_PATTERN,
        targets=[fn(max_event_age_s=60, dead_letter_queue="dlq")],
    )
    bus.put_events([tx()])
    # WHEN the dispatcher runs
    bus.run_due(now=T0 + 120)
    # THEN the function is not invoked and the on-failure record says why
    assert calls.calls == []
    (record,) = queues.get("dlq").bodies()
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert "responsePayload" not in record
    assert bus.stats().failed == 1


def test_a_failing_target_does_not_hold_back_the_other_targets(
    make_bus: Callable[..., LocalEventBus],
) -> None:
    seen: list[str] = []

    def deliver(target: Target, payload: Any) -> None:
        seen.append(target.name)
        if target.name == "broken":
            raise ValueError("bad input")

    bus = make_bus(deliver)
    bus.put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[fn("broken"), fn("fine")])
    bus.put_events([tx()])
    bus.run_due()
    assert sorted(seen) == ["broken", "fine"]
    assert bus.stats().delivered == 1
    assert bus.stats().pending == 1


def test_queue_target_failures_are_retried_then_dead_lettered_like_eventbridge(
    make_bus: Callable[..., LocalEventBus], queues: FakeQueues
) -> None:
    # GIVEN a queue target whose queue refuses two sends, one retry allowed
    queues.get("tx-q").failures_left = 2
    bus = make_bus()
    target = Target(kind="queue", name="tx-q", max_attempts=1, dead_letter_queue="rule-dlq")
    bus.put_rule("to-queue", bus="aib", pattern=TX_PATTERN, targets=[target])
    ids = bus.put_events([tx()]).event_ids
    # WHEN the first send and its retry fail
    bus.run_due()
    bus.run_due(now=T0 + 1)
    # THEN EventBridge's dead-letter message arrives: the event, with why in its attributes
    ((body, attributes),) = queues.get("rule-dlq").messages
    assert json.loads(body)["id"] == ids[0]
    assert attributes["ERROR_CODE"]["StringValue"] == "ConnectionError"
    assert attributes["EXHAUSTED_RETRY_CONDITION"]["StringValue"] == "MaximumRetryAttempts"
    assert attributes["RULE_ARN"]["StringValue"] == (
        "arn:aws:events:local:000000000000:rule/aib/to-queue"
    )
    assert attributes["RETRY_ATTEMPTS"]["StringValue"] == "1"


def test_a_dispatchers_batch_reaches_each_queue_in_one_send_in_order(
    make_bus: Callable[..., LocalEventBus], queues: FakeQueues
) -> None:
    # GIVEN two rules filling two queues, and a function rule beside them
    calls = Recorder()
    bus = make_bus(calls)
    bus.put_rule("to-a", bus="aib", pattern=TX_PATTERN, targets=[Target(kind="queue", name="a")])
    bus.put_rule("to-b", bus="aib", pattern=TX_PATTERN, targets=[Target(kind="queue", name="b")])
    bus.put_rule("to-fn", bus="aib", pattern=TX_PATTERN, targets=[fn()])
    # WHEN four events are put and dispatched (12 deliveries: 10 claimed at a time)
    ids = bus.put_events([tx(float(n)) for n in range(4)]).event_ids
    bus.run_due()
    # THEN each queue got its events in order, in one send per claimed batch (not one each),
    # and every delivery is recorded as delivered with its message
    assert [e["id"] for e in queues.get("a").bodies()] == list(ids)
    assert [e["id"] for e in queues.get("b").bodies()] == list(ids)
    assert sum(queues.get("a").batches) == sum(queues.get("b").batches) == 4
    assert queues.get("a").batches == [4] and queues.get("b").batches == [3, 1]
    assert len(calls.calls) == 4
    assert bus.stats().delivered == 12


def test_queue_targets_need_a_queue_service(tmp_path: Path) -> None:
    bus = LocalEventBus(tmp_path / "e.db", deliver=Recorder())
    with pytest.raises(ValueError, match="without `queues`"):
        bus.put_rule("q", bus="aib", pattern=TX_PATTERN, targets=[Target(kind="queue", name="q")])
    bus.close()


# -- durability and several dispatchers ------------------------------------------------------


def test_undelivered_events_survive_a_restart(
    make_bus: Callable[..., LocalEventBus],
) -> None:
    # GIVEN events accepted by a bus that stops before delivering them
    first = make_bus()
    first.put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[fn()])
    ids = first.put_events([tx(1.0), tx(2.0)]).event_ids
    first.close()
    # WHEN the bus is opened again on the same file
    calls = Recorder()
    second = make_bus(calls)
    # THEN the deliveries are still there and are made
    assert second.stats().pending == 2
    assert second.run_due() == 2
    assert [p["id"] for _, p in calls.calls] == list(ids)


def test_a_crashed_dispatchers_claim_comes_back_after_its_lease(
    make_bus: Callable[..., LocalEventBus], clock: Clock
) -> None:
    # GIVEN dispatcher A took a delivery and hangs in it (as if its process died)
    entered, release = threading.Event(), threading.Event()

    def hang(target: Target, payload: Any) -> None:
        entered.set()
        release.wait(10)

    a = make_bus(hang, lease_s=30.0)
    a.put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[fn()])
    a.put_events([tx()])
    worker = threading.Thread(target=a.run_due)
    worker.start()
    assert entered.wait(5)
    calls = Recorder()
    b = make_bus(calls, lease_s=30.0)
    # WHEN dispatcher B looks before and after A's lease runs out
    assert b.run_due(now=T0 + 29) == 0
    assert b.stats().in_flight == 1
    assert b.run_due(now=T0 + 31) == 1
    # THEN B delivers it; A's late completion does not count twice
    assert len(calls.calls) == 1
    release.set()
    worker.join(5)
    assert b.stats().delivered == 1


def test_a_batch_interrupted_midway_keeps_what_it_finished_and_loses_nothing(
    make_bus: Callable[..., LocalEventBus], clock: Clock
) -> None:
    # GIVEN three events claimed as one batch; the second delivery is interrupted by something
    # the dispatcher does not catch (the process being stopped)
    calls: list[str] = []

    def deliver(target: Target, payload: Any) -> None:
        calls.append(payload["id"])
        if len(calls) == 2:
            raise KeyboardInterrupt

    bus = make_bus(deliver, lease_s=30.0)
    bus.put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[fn()])
    ids = bus.put_events([tx(1.0), tx(2.0), tx(3.0)]).event_ids
    # WHEN the batch runs
    with pytest.raises(KeyboardInterrupt):
        bus.run_due()
    # THEN the finished delivery is recorded, the other two stay claimed until their lease
    assert bus.stats() == BusStats(pending=0, in_flight=2, delivered=1, failed=0)
    # AND after the lease another dispatcher makes them: the interrupted one again, the third
    later = Recorder()
    assert make_bus(later, lease_s=30.0).run_due(now=T0 + 31) == 2
    assert [p["id"] for _, p in later.calls] == list(ids[1:])
    assert bus.stats().delivered == 3


def test_a_batch_hands_back_a_row_that_could_outlive_its_lease(
    make_bus: Callable[..., LocalEventBus], clock: Clock
) -> None:
    # GIVEN two events for a function with a 20 s timeout, a 30 s lease, and a first
    # delivery that takes 15 s
    delivered: list[float] = []
    taken_over: list[int] = []
    other = make_bus(Recorder(), lease_s=30.0)

    def slow(target: Target, payload: Any) -> None:
        delivered.append(clock.now)
        if len(delivered) == 2:
            # A second dispatcher looks just after the first claim's lease ran out.
            taken_over.append(other.run_due(now=T0 + 31))
        clock.now += 15

    bus = make_bus(slow, lease_s=30.0)
    bus.put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[fn(timeout_s=20)])
    bus.put_events([tx(1.0), tx(2.0)])
    # WHEN one dispatcher claims both
    assert bus.run_due() == 2
    # THEN the second was handed back (15 s spent + 20 s timeout > 30 s lease) and claimed
    # again with a fresh lease: the second dispatcher found nothing to take over midway
    assert delivered == [T0, T0 + 15]
    assert taken_over == [0]
    assert bus.stats() == BusStats(pending=0, in_flight=0, delivered=2, failed=0)


CRASHING_DISPATCHER = """
import os, sys
from pathlib import Path
from aibackend.adapters.local_bus import LocalEventBus

def die(target, payload):
    os._exit(3)  # the process dies in the middle of the delivery

LocalEventBus(Path(sys.argv[1]), deliver=die).run_due()
"""


def test_deliveries_held_by_a_dispatcher_process_that_died_come_back_at_start(
    tmp_path: Path,
) -> None:
    # GIVEN an event whose delivery a dispatcher process claimed, then died making it
    db = tmp_path / "e.db"
    got = threading.Event()
    bus = LocalEventBus(db, deliver=lambda t, p: got.set())
    bus.put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[fn()])
    bus.put_events([tx()])
    crashed = subprocess.run([sys.executable, "-c", CRASHING_DISPATCHER, str(db)], check=False)
    assert crashed.returncode == 3
    assert bus.stats().in_flight == 1  # its lease (15 min) has not run out
    # WHEN `aib dev` starts again
    bus.start()
    try:
        # THEN the delivery is made right away, not after the lease
        assert got.wait(5)
    finally:
        bus.close()


def test_two_running_buses_on_one_file_deliver_each_event_once(tmp_path: Path) -> None:
    # GIVEN two buses (as two processes would) on one file, each with 2 dispatcher threads
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def deliver(target: Target, payload: Any) -> None:
        with lock:
            seen[payload["id"]] += 1

    buses = [LocalEventBus(tmp_path / "e.db", deliver=deliver, poll_s=0.01) for _ in range(2)]
    buses[0].put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[fn()])
    for bus in buses:
        bus.start(workers=2)
    # WHEN both publish 200 events in total
    ids: list[str | None] = []
    for i in range(20):
        ids += buses[i % 2].put_events([tx(float(j)) for j in range(10)]).event_ids
    deadline = time.monotonic() + 20
    while sum(seen.values()) < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    for bus in buses:
        bus.close()
    # THEN every event was delivered exactly once
    assert len(seen) == 200
    assert set(seen) == set(ids)
    assert max(seen.values()) == 1


def test_background_dispatcher_delivers_promptly(tmp_path: Path) -> None:
    # GIVEN a running dispatcher
    got = threading.Event()
    bus = LocalEventBus(tmp_path / "e.db", deliver=lambda t, p: got.set())
    bus.put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[fn()])
    bus.start()
    try:
        # WHEN an event is put THEN the function runs right away (no polling delay)
        t0 = time.perf_counter()
        bus.put_events([tx()])
        assert got.wait(2)
        assert time.perf_counter() - t0 < 0.5
    finally:
        bus.stop()
    bus.close()


def test_background_dispatcher_makes_retries_when_due(tmp_path: Path) -> None:
    calls = Recorder(fail=1)
    bus = LocalEventBus(tmp_path / "e.db", deliver=calls, retry_delays_s=(0.05,))
    bus.put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[fn()])
    bus.start()
    try:
        bus.put_events([tx()])
        deadline = time.monotonic() + 5
        while bus.stats().delivered < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        bus.close()
    assert len(calls.calls) == 2


def test_publisher_process_events_are_picked_up_by_the_running_dispatcher(
    tmp_path: Path,
) -> None:
    # GIVEN `aib dev`'s bus running, and a function's publish-only bus on the same file
    got = threading.Event()
    runtime = LocalEventBus(tmp_path / "e.db", deliver=lambda t, p: got.set(), poll_s=0.02)
    runtime.put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[fn()])
    runtime.start()
    publisher = LocalEventBus(tmp_path / "e.db", deliver=Recorder())
    try:
        # WHEN the publisher puts an event THEN the runtime delivers it within its poll interval
        publisher.put_events([tx()])
        assert got.wait(2)
    finally:
        publisher.close()
        runtime.close()


# -- archive and replay ----------------------------------------------------------------------


def test_replay_resends_archived_events_of_the_window_to_todays_rules(
    make_bus: Callable[..., LocalEventBus], clock: Clock
) -> None:
    # GIVEN three events at 10:00, 11:00 and 12:00 and no rule at the time
    calls = Recorder()
    bus = make_bus(calls)
    start = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    for h in range(3):
        bus.put_events([tx(float(h)).model_copy(update={"time": start + timedelta(hours=h)})])
    assert bus.run_due() == 0
    # WHEN a rule is added and the window [10:30, 12:00) is replayed
    bus.put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[fn()])
    n = bus.replay(start + timedelta(minutes=30), start + timedelta(hours=2), name="backfill")
    bus.run_due()
    # THEN only the 11:00 event is delivered, marked with the replay name
    assert n == 1
    ((_, payload),) = calls.calls
    assert payload["detail"]["amount"] == 1.0
    assert payload["replay-name"] == "backfill"
    # AND replayed events are not archived again: replaying everything finds the 3 originals
    assert bus.replay(start, start + timedelta(days=1), name="all") == 3


def test_rules_can_match_on_replay_name(make_bus: Callable[..., LocalEventBus]) -> None:
    calls = Recorder()
    bus = make_bus(calls)
    bus.put_rule(
        "live-only",
        bus="aib",
        pattern={**TX_PATTERN, "replay-name": [{"exists": False}]},
        targets=[fn()],
    )
    bus.put_events([tx()])
    bus.replay(datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC), name="r")
    bus.run_due()
    assert len(calls.calls) == 1
    assert "replay-name" not in calls.calls[0][1]


def test_replay_window_must_be_ordered(make_bus: Callable[..., LocalEventBus]) -> None:
    bus = make_bus()
    with pytest.raises(ValueError, match="before it starts"):
        bus.replay(datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC), name="x")


# -- retention ---------------------------------------------------------------------------------

DAY = 86_400.0


def test_sweep_deletes_old_archive_and_delivered_rows_and_keeps_what_is_still_needed(
    make_bus: Callable[..., LocalEventBus], clock: Clock, queues: FakeQueues
) -> None:
    # GIVEN a 7-day archive and one day of delivered rows; on day 0 one event is delivered,
    # one fails for good, and one is still waiting for its retry (the first attempt failed)
    def deliver(target: Target, payload: Any) -> None:
        if payload["detail"]["amount"] != 1.0:
            raise RuntimeError("model endpoint timed out")

    bus = make_bus(deliver, archive_retention_s=7 * DAY, delivered_retention_s=DAY)
    bus.put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[fn(max_attempts=0)])
    bus.put_rule(
        "retried",
        bus="aib",
        pattern={**TX_PATTERN, "detail": {"amount": [3.0]}},
        targets=[fn("slow", max_attempts=1, max_event_age_s=21_600)],
    )
    ok, failed, waiting = bus.put_events([tx(1.0), tx(2.0), tx(3.0)]).event_ids
    bus.run_due()
    assert bus.stats() == BusStats(pending=1, in_flight=0, delivered=1, failed=2)
    # WHEN a sweep runs within both periods
    # THEN nothing goes
    clock.now = T0 + DAY / 2
    assert bus.sweep() == (0, 0)
    # WHEN a sweep runs after a day: the delivered row goes, the events stay replayable
    clock.now = T0 + DAY + 1
    assert bus.sweep() == (0, 1)
    assert bus.stats() == BusStats(pending=1, in_flight=0, delivered=0, failed=2)
    bus.delete_rule("tx", bus="aib")
    bus.delete_rule("retried", bus="aib")  # (its pending delivery stays, as on AWS)
    window = (datetime.fromtimestamp(T0, UTC), datetime.fromtimestamp(T0 + 1, UTC))
    assert bus.replay(*window, name="r") == 3
    # WHEN a sweep runs after the archive's 7 days, the third event's retry still pending
    clock.now = T0 + 7 * DAY + 1
    events, _ = bus.sweep()
    # THEN the two events nothing waits for are deleted; the third stays with its delivery
    assert events == 2
    assert [e["id"] for e in bus.archived()] == [waiting]
    # AND the failed deliveries keep their on-failure records
    assert {f["event_id"] for f in bus.failures()} == {failed, waiting}
    assert ok not in {e["id"] for e in bus.archived()}


def test_the_waiting_delivery_of_a_swept_archive_is_still_made(
    make_bus: Callable[..., LocalEventBus], clock: Clock
) -> None:
    # GIVEN an event whose delivery is still pending (a dispatcher down) when retention passes
    calls = Recorder()
    bus = make_bus(calls, archive_retention_s=60.0, delivered_retention_s=60.0)
    bus.put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[fn(max_event_age_s=3600)])
    (event_id,) = bus.put_events([tx()]).event_ids
    clock.now = T0 + 120
    # WHEN the sweep runs, then the dispatcher comes back
    assert bus.sweep() == (0, 0)
    assert bus.run_due() == 1
    # THEN the event is delivered with its payload; the next sweep removes both rows
    assert calls.calls[0][1]["id"] == event_id
    clock.now = T0 + 200
    assert bus.sweep() == (1, 1)
    assert bus.archived() == []


def test_sweep_deletes_in_chunks_until_done(
    make_bus: Callable[..., LocalEventBus], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 25 delivered events past retention, 5 newer ones, and chunks of 10 rows
    monkeypatch.setattr("aibackend.adapters.local_bus.SWEEP_CHUNK", 10)
    bus = make_bus(Recorder(), archive_retention_s=60.0, delivered_retention_s=60.0)
    bus.put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[fn()])
    for _ in range(3):
        bus.put_events([tx(float(i)) for i in range(10)][: 10 if _ < 2 else 5])
    clock.now = T0 + 50
    newer = bus.put_events([tx(float(i)) for i in range(5)]).event_ids
    bus.run_due()
    clock.now = T0 + 61
    # WHEN one sweep runs THEN it removes the old ones, ten rows a transaction, and no newer one
    assert bus.sweep() == (25, 25)
    assert sorted(e["id"] for e in bus.archived()) == sorted(newer)
    assert bus.stats().delivered == 5


def test_retention_periods_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="retention"):
        LocalEventBus(tmp_path / "e.db", deliver=Recorder(), archive_retention_s=0)


def test_a_started_bus_sweeps_on_its_own(tmp_path: Path) -> None:
    # GIVEN a delivered event already older than both (tiny) retention periods
    clock = Clock(T0)
    bus = LocalEventBus(
        tmp_path / "events.db",
        deliver=Recorder(),
        clock=clock,
        archive_retention_s=1.0,
        delivered_retention_s=1.0,
    )
    bus.put_rule("tx", bus="aib", pattern=TX_PATTERN, targets=[fn()])
    bus.put_events([tx()])
    bus.run_due()
    clock.now = T0 + 10
    # WHEN the dispatcher starts (its housekeeping thread sweeps at once, then every minute)
    bus.start(workers=1)
    try:
        deadline = time.monotonic() + 5
        while bus.archived() and time.monotonic() < deadline:
            time.sleep(0.02)
        # THEN both rows are gone without a call to sweep()
        assert bus.archived() == []
        assert bus.stats().delivered == 0
    finally:
        bus.stop()
        bus.close()
