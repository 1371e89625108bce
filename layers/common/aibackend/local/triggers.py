"""Event sources of the local runtime, wired from the same declarations CDK reads.

- Queue triggers: a Lambda-style event source mapping per `[[queues]]` entry (batch size,
  batching window, maximum concurrency, partial batch failure, retries until the DLQ).
- Event, object and schedule triggers: rules on the local event bus whose targets invoke the
  function asynchronously (retries, maximum event age, on-failure queue), like Lambda.
- Schedules put `Scheduled Event`s on the local `default` bus at their fire times; files that
  appear in a bucket folder put `Object Created` events there, as S3 does on AWS. A function
  whose object triggers ask for `notification = "s3"` receives that event reshaped into an S3
  event notification, as the rule's input transformer reshapes it on AWS.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from aibackend.adapters.local_queue import MAX_BATCH
from aibackend.catalog import (
    DEFAULT_BUS,
    FunctionSpec,
    QueueTrigger,
    dead_letter_queue,
    failure_queue,
)
from aibackend.events.schedule import Schedule
from aibackend.events.shapes import (
    s3_notification,
    s3_object_created_event,
    s3_request_id,
    sequencer,
)
from aibackend.local.host import Host
from aibackend.ports import PutEvent, Queue, QueueConfig, QueueMessage

log = logging.getLogger("aib.triggers")

ACCOUNT = "000000000000"
REGION = "local"
#: Long-poll wait of the queue pollers: short enough for a prompt shutdown.
POLL_WAIT_S = 1.0
#: EventBridge's retry policy for a rule's queue target (its defaults: 185 retries over at most
#: 24 hours); an event still not in the queue then goes to the queue's DLQ with its reason.
QUEUE_TARGET_RETRIES = 185
QUEUE_TARGET_MAX_AGE_S = 86_400
#: Inside a batching window, how long a poller that found the queue empty waits before it
#: receives again. Receiving each message as it arrived cost a write transaction per message
#: (100 messages: ~100 receives, now at most ~32); a batch that fills up is read 10 at a time
#: without waiting.
WINDOW_TICK_S = 0.1


def queue_configs(spec: FunctionSpec) -> list[QueueConfig]:
    """Queues a function owns: its input queues with their DLQs, and its on-failure queue."""
    out: list[QueueConfig] = []
    for q in spec.queues:
        out.append(QueueConfig(name=dead_letter_queue(q.queue), retention_s=1_209_600))
        out.append(
            QueueConfig(
                name=q.queue,
                visibility_timeout_s=q.visibility_for(spec.timeout_s),
                max_receive_count=q.max_receive_count,
                dead_letter_queue=dead_letter_queue(q.queue),
                retention_s=q.retention_s,
            )
        )
    if spec.events or spec.objects or spec.schedules:
        out.append(QueueConfig(name=failure_queue(spec.name), retention_s=1_209_600))
    return out


def rule_arn(name: str, bus: str = DEFAULT_BUS) -> str:
    path = name if bus == DEFAULT_BUS else f"{bus}/{name}"
    return f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{path}"


def schedule_rule_name(spec: FunctionSpec, index: int) -> str:
    return f"{spec.name}-schedule-{index}"


def event_rule_name(spec: FunctionSpec, index: int) -> str:
    return f"{spec.name}-event-{index}"


def object_rule_name(spec: FunctionSpec, index: int) -> str:
    return f"{spec.name}-object-{index}"


def queue_rule_name(spec: FunctionSpec, queue: int, index: int) -> str:
    return f"{spec.name}-queue-{queue}-event-{index}"


def rule_names(spec: FunctionSpec) -> list[str]:
    """Every local bus rule the runtime keeps for a function."""
    return (
        [event_rule_name(spec, i) for i in range(len(spec.events))]
        + [object_rule_name(spec, i) for i in range(len(spec.objects))]
        + [schedule_rule_name(spec, i) for i in range(len(spec.schedules))]
        + [
            queue_rule_name(spec, qi, i)
            for qi, q in enumerate(spec.queues)
            for i in range(len(q.events))
        ]
    )


class Gate:
    """A function's reserved concurrency (unbounded when not declared)."""

    def __init__(self, limit: int | None) -> None:
        self._sem = threading.BoundedSemaphore(limit) if limit else None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        if self._sem is None:
            yield
            return
        with self._sem:
            yield


def failed_ids(response: Any, batch: list[QueueMessage]) -> set[str]:
    """Message ids to retry, read from a `batchItemFailures` response like Lambda does.

    An identifier that is empty or not in the batch makes the whole batch a failure.
    """
    ids = {m.message_id for m in batch}
    if not isinstance(response, dict) or "batchItemFailures" not in response:
        return set()
    items = response.get("batchItemFailures") or []
    out: set[str] = set()
    for item in items:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not ident or ident not in ids:
            log.error("invalid batchItemFailures entry %r: the whole batch is retried", item)
            return ids
        out.add(ident)
    return out


class QueuePoller:
    """One event source mapping: polls a queue and invokes the function with SQS events."""

    def __init__(
        self,
        host: Host,
        trigger: QueueTrigger,
        queue: Queue,
        gate: Gate,
        *,
        build_event: Callable[[list[QueueMessage], str], dict[str, Any]],
    ) -> None:
        self.host, self.trigger, self.queue, self.gate = host, trigger, queue, gate
        self._build_event = build_event
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.batches = 0

    def start(self) -> None:
        workers = self.trigger.max_concurrency or 2
        for i in range(workers):
            t = threading.Thread(
                target=self._loop, name=f"aib-sqs-{self.trigger.queue}-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()

    def _collect(self) -> list[QueueMessage]:
        """Up to batch_size messages, waiting at most the batching window once one arrived."""
        want = min(MAX_BATCH, self.trigger.batch_size)
        batch = self.queue.receive(want, wait_s=POLL_WAIT_S)
        if not batch:
            return []
        deadline = time.monotonic() + self.trigger.batching_window_s
        drained = len(batch) < want
        while len(batch) < self.trigger.batch_size:
            left = deadline - time.monotonic()
            # The queue was empty a moment ago: let messages gather for a tick (or until the
            # window ends) instead of taking each one alone as it arrives.
            if left <= 0 or self._stop.is_set():
                break
            if drained and self._stop.wait(min(left, WINDOW_TICK_S)):
                break
            want = min(MAX_BATCH, self.trigger.batch_size - len(batch))
            more = self.queue.receive(want)
            batch.extend(more)
            drained = len(more) < want
        return batch

    def poll_once(self) -> int:
        """Receive one batch and process it; returns the number of messages handled."""
        batch = self._collect()
        if batch:
            self.process(batch)
        return len(batch)

    def process(self, batch: list[QueueMessage]) -> None:
        event = self._build_event(batch, self.trigger.queue)
        try:
            with self.gate.hold():
                response = self.host.invoke(event)
            failed = failed_ids(response, batch)
        except Exception:
            log.exception(
                "%s failed on a batch of %d from %s: every message will be retried",
                self.host.spec.name,
                len(batch),
                self.trigger.queue,
            )
            failed = {m.message_id for m in batch}
        done = [m.receipt_handle for m in batch if m.message_id not in failed]
        for i in range(0, len(done), 10):
            self.queue.delete_batch(done[i : i + 10])
        self.batches += 1
        if failed:
            log.warning(
                "%s: %d of %d messages from %s failed; they return after the visibility timeout",
                self.host.spec.name,
                len(failed),
                len(batch),
                self.trigger.queue,
            )

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # keep polling: a broken batch must not stop the mapping
                log.exception("poller of %s failed", self.trigger.queue)
                self._stop.wait(1.0)


class Scheduler:
    """Fires every declared schedule as a `Scheduled Event` on the local default bus."""

    def __init__(
        self,
        schedules: list[tuple[str, Schedule]],
        put: Callable[[list[PutEvent]], Any],
        *,
        anchor: datetime | None = None,
    ) -> None:
        """`schedules`: (rule name, parsed schedule). A schedule whose years ran out is dropped."""
        self.anchor = anchor or datetime.now(UTC)
        self._put = put
        self._sched = dict(schedules)
        self._next: dict[str, datetime] = {}
        for name, sched in schedules:
            first = sched.next_after(self.anchor)
            if first is not None:
                self._next[name] = first
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def due(self, now: datetime) -> list[PutEvent]:
        """Events for every rule due by `now`: one per rule, missed fires are skipped."""
        out = []
        for name, at in list(self._next.items()):
            if at > now:
                continue
            out.append(
                PutEvent(
                    source="aws.events",
                    detail_type="Scheduled Event",
                    detail={},
                    resources=(rule_arn(name),),
                    time=at,
                    bus=DEFAULT_BUS,
                )
            )
            nxt = self._sched[name].next_after(at)
            while nxt is not None and nxt <= now:  # EventBridge does not backfill either
                nxt = self._sched[name].next_after(nxt)
            if nxt is None:
                del self._next[name]
            else:
                self._next[name] = nxt
        return out

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                events = self.due(datetime.now(UTC))
                for i in range(0, len(events), 10):
                    self._put(events[i : i + 10])
                now = datetime.now(UTC)
                wait = min(((at - now).total_seconds() for at in self._next.values()), default=30)
                self._stop.wait(max(0.05, min(wait, 30.0)))

        self._thread = threading.Thread(target=loop, name="aib-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


def object_created_event(bucket: str, key: str, size: int, etag: str) -> PutEvent:
    """S3's EventBridge `Object Created` event for an object of a local bucket."""
    now = datetime.now(UTC)
    event = s3_object_created_event(
        bucket=bucket,
        key=key,
        size=size,
        etag=etag,
        sequencer=sequencer(),
        time=now,
        event_id="",  # the bus assigns the id
        request_id=s3_request_id(),
        account=ACCOUNT,
        region=REGION,
    )
    return PutEvent(
        source=event["source"],
        detail_type=event["detail-type"],
        detail=event["detail"],
        resources=tuple(event["resources"]),
        time=now,
        bus=DEFAULT_BUS,
    )


def receives_s3_notifications(spec: FunctionSpec) -> bool:
    """Whether the function's object triggers deliver S3 event notifications (the catalog makes
    every `[[objects]]` trigger of a function ask for the same shape)."""
    return bool(spec.objects) and spec.objects[0].notification == "s3"


def is_object_created(payload: Any) -> bool:
    """Whether a delivery carries S3's EventBridge `Object Created` event."""
    return (
        isinstance(payload, dict)
        and payload.get("source") == "aws.s3"
        and payload.get("detail-type") == "Object Created"
    )


def s3_notification_from_eventbridge(
    event: dict[str, Any], *, configuration_id: str
) -> dict[str, Any]:
    """The S3 event notification (`{"Records": [...]}`) an `Object Created` event becomes for a
    `notification = "s3"` trigger: what the rule's input transformer builds on AWS
    (`infra.triggers.s3_notification_input`), field for field, so both topologies agree.

    Where an input transformer cannot do what S3 does, this follows the transformer, not S3:
    the key is NOT URL-encoded (`a b.csv` stays `a b.csv`), `eventTime` is the event's
    whole-second `time`, `eventName` is `ObjectCreated:Put` whatever the detail's `reason`, and
    `x-amz-id-2` (which the event does not carry) is the event's id. `configuration_id` is the
    subscribing function's name on both sides.
    """
    detail = event["detail"]
    obj = detail["object"]
    notification = s3_notification(
        bucket=detail["bucket"]["name"],
        key=obj["key"],
        size=obj["size"],
        etag=obj["etag"],
        sequencer=obj["sequencer"],
        time=datetime.fromisoformat(event["time"]),
        request_id=detail["request-id"],
        region=event["region"],
        account=event["account"],
        source_ip=detail["source-ip-address"],
        principal_id=f"AWS:{detail['requester']}",
        configuration_id=configuration_id,
        version_id=obj.get("version-id"),
    )
    record = notification["Records"][0]
    record["eventTime"] = event["time"]
    record["responseElements"]["x-amz-id-2"] = event["id"]
    record["s3"]["bucket"]["arn"] = event["resources"][0]
    record["s3"]["object"]["key"] = obj["key"]
    return notification
