"""A queue event source mapping's batching window, on the local queue engine."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from aibackend.adapters.local_queue import SqliteQueue, SqliteQueueService
from aibackend.catalog import QueueTrigger
from aibackend.local.triggers import WINDOW_TICK_S, Gate, QueuePoller
from aibackend.ports import QueueConfig, QueueMessage


class CountingQueue:
    """The queue, with its receive calls counted (each one is a write transaction)."""

    def __init__(self, queue: SqliteQueue) -> None:
        self.queue = queue
        self.receives = 0

    def receive(self, max_messages: int = 1, **kwargs: Any) -> list[QueueMessage]:
        self.receives += 1
        return self.queue.receive(max_messages, **kwargs)

    def delete_batch(self, handles: list[str]) -> None:
        self.queue.delete_batch(handles)


class RecordingHost:
    """A function that takes every batch and records the bodies it got."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def invoke(self, event: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
        self.batches.append(event["bodies"])
        return {"batchItemFailures": []}


def _mapping(
    svc: SqliteQueueService, name: str, batch_size: int, window_s: int
) -> tuple[QueuePoller, CountingQueue, RecordingHost]:
    """A queue `name` and an event source mapping on it, to a function that records batches."""
    queue = CountingQueue(svc.ensure(QueueConfig(name=name)))
    host = RecordingHost()
    poller = QueuePoller(
        host,  # type: ignore[arg-type]
        QueueTrigger(queue=name, batch_size=batch_size, batching_window_s=window_s),
        queue,  # type: ignore[arg-type]
        Gate(None),
        build_event=lambda batch, _: {"bodies": [m.body for m in batch]},
    )
    return poller, queue, host


def test_a_batching_window_gathers_a_stream_without_a_receive_per_message(
    tmp_path: Path,
) -> None:
    # GIVEN a mapping with a 2 s batching window and room for 100 messages in a batch
    svc = SqliteQueueService(tmp_path / "queues.db")
    poller, queue, host = _mapping(svc, "capture", batch_size=100, window_s=2)

    def stream() -> None:
        for i in range(100):
            queue.queue.send(f"m{i}")
            time.sleep(0.002)

    # WHEN 100 messages arrive one by one, a few milliseconds apart, while it collects
    sender = threading.Thread(target=stream)
    sender.start()
    handled = poller.poll_once()
    sender.join()
    # THEN one invocation gets all of them, in order
    assert handled == 100
    assert host.batches == [[f"m{i}" for i in range(100)]]
    # AND it received them in bulk: the first long poll, at most one receive per tick of the
    # window and one per 10 messages, where it used to take each message alone (~100 receives)
    assert queue.receives <= 1 + round(2 / WINDOW_TICK_S) + 10 + 1
    # AND every message of the batch was deleted after the invocation
    assert svc.get("capture").stats().visible == 0
    svc.close()


def test_a_quiet_queue_is_invoked_at_the_end_of_the_window_with_what_came(tmp_path: Path) -> None:
    # GIVEN a mapping with a 1 s window and a batch size it will not reach
    svc = SqliteQueueService(tmp_path / "queues.db")
    poller, queue, host = _mapping(svc, "jobs", batch_size=50, window_s=1)
    # WHEN three messages come within the window
    for body in ("a", "b"):
        queue.queue.send(body)
    late = threading.Timer(0.3, queue.queue.send, args=("c",))
    late.start()
    t0 = time.monotonic()
    handled = poller.poll_once()
    late.join()
    # THEN the invocation waits for the window, not for a full batch, and has all three
    assert handled == 3
    assert host.batches == [["a", "b", "c"]]
    assert time.monotonic() - t0 >= 1.0
    svc.close()
