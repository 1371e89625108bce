"""Queue, event, object and schedule triggers wired by the local runtime from declarations."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aibackend.local.runtime import LocalRuntime
from aibackend.ports import PutEvent
from tests.support import RECORDER, running_runtime, wait_for, write_functions
from tests.support import seen as seen_in

pytestmark = pytest.mark.slow

# Each handler records what it saw (RECORDER's `record`) in <state>/seen/<function>.jsonl.
FUNCTIONS = {
    "consumer": (
        """
        timeout_s = 1
        [[queues]]
        queue = "orders"
        batch_size = 5
        visibility_timeout_s = 1
        max_receive_count = 2
        """,
        """
        def handler(event, context):
            failures = []
            for r in event["Records"]:
                if "poison" in r["body"]:
                    failures.append({"itemIdentifier": r["messageId"]})
                else:
                    record("consumer", {"body": r["body"], "source": r["eventSource"]})
            return {"batchItemFailures": failures}
        """,
    ),
    "listener": (
        """
        [[events]]
        pattern = { source = ["test.app"], detail-type = ["Ping"] }
        input_path = "$.detail"
        max_attempts = 1
        max_event_age_s = 60
        """,
        """
        def handler(event, context):
            if event.get("fail"):
                raise RuntimeError("asked to fail")
            record("listener", event)
        """,
    ),
    "on_upload": (
        """
        [[objects]]
        bucket = "raw"
        prefix = "in/"
        suffix = ".csv"
        """,
        """
        def handler(event, context):
            key = event["detail"]["object"]["key"]
            record("on_upload", {"type": event["detail-type"], "key": key})
        """,
    ),
    "ticker": (
        """
        [[schedules]]
        expression = "rate(1 hour)"
        """,
        """
        def handler(event, context):
            record("ticker", {"type": event["detail-type"], "resources": event["resources"]})
        """,
    ),
}


@pytest.fixture(params=[False, True], ids=["in-process", "isolated"])
def runtime(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalRuntime]:
    code = {n: (toml, RECORDER + textwrap.dedent(h)) for n, (toml, h) in FUNCTIONS.items()}
    root = write_functions(tmp_path / "functions", code)
    with running_runtime(root, tmp_path / "state", isolate=request.param) as rt:
        yield rt


def seen(rt: LocalRuntime, name: str) -> list[dict[str, Any]]:
    return seen_in(rt.settings.state_dir, name)


def test_queue_messages_are_processed_once_and_a_poison_message_ends_in_the_dlq(
    runtime: LocalRuntime,
) -> None:
    # GIVEN 12 good messages and one poison message on the consumer's queue
    queue = runtime.queues.get("orders")
    bodies = [f"order-{i}" for i in range(12)] + ["poison"]
    for i in range(0, len(bodies), 10):
        queue.send_batch(bodies[i : i + 10])
    # THEN every good one is processed exactly once, with SQS's event shape
    wait_for(lambda: len(seen(runtime, "consumer")) >= 12)
    got = seen(runtime, "consumer")
    assert sorted(x["body"] for x in got) == sorted(bodies[:-1])
    assert {x["source"] for x in got} == {"aws:sqs"}
    # AND the poison message moves to the DLQ after max_receive_count receives
    dlq = runtime.queues.get("orders-dlq")
    wait_for(lambda: dlq.stats().visible == 1)
    [msg] = dlq.receive(1)
    assert msg.body == "poison"
    assert queue.stats().visible == queue.stats().in_flight == 0


def test_an_event_reaches_its_rule_target_through_the_input_path(runtime: LocalRuntime) -> None:
    result = runtime.bus.put_events(
        [
            PutEvent(source="test.app", detail_type="Ping", detail={"n": 1}),
            PutEvent(source="test.app", detail_type="Other", detail={"n": 2}),
        ]
    )
    assert result.failed_count == 0
    wait_for(lambda: seen(runtime, "listener") == [{"n": 1}])
    time.sleep(0.3)
    assert seen(runtime, "listener") == [{"n": 1}]


def test_a_failing_async_invocation_is_retried_then_lands_in_the_failure_queue(
    runtime: LocalRuntime,
) -> None:
    runtime.bus.put_events([PutEvent(source="test.app", detail_type="Ping", detail={"fail": 1})])
    failures = runtime.queues.get("listener-failures")
    wait_for(lambda: failures.stats().visible == 1, timeout=30)
    [msg] = failures.receive(1)
    record = json.loads(msg.body)
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    # Lambda's record carries the payload the function received (after the input path)
    assert record["requestPayload"] == {"fail": 1}
    assert "asked to fail" in record["responsePayload"]["errorMessage"]


def test_a_file_dropped_into_a_bucket_folder_triggers_object_created(
    runtime: LocalRuntime,
) -> None:
    # GIVEN the runtime watches the bucket folders
    folder = runtime.settings.state_dir / "buckets" / "raw" / "in"
    folder.mkdir(parents=True, exist_ok=True)
    # WHEN a matching file is written (write-then-rename), and non-matching ones too
    tmp = folder / ".x.tmp"
    tmp.write_text("a,b\n1,2\n")
    tmp.rename(folder / "day1.csv")
    (folder / "notes.txt").write_text("ignored: suffix")
    (runtime.settings.state_dir / "buckets" / "raw" / "day2.csv").write_text("ignored: prefix")
    # THEN the function sees exactly one Object Created event for in/day1.csv
    wait_for(lambda: len(seen(runtime, "on_upload")) >= 1)
    time.sleep(1.5)
    assert seen(runtime, "on_upload") == [{"type": "Object Created", "key": "in/day1.csv"}]


def test_a_schedule_fires_a_scheduled_event_at_its_time(runtime: LocalRuntime) -> None:
    # GIVEN the ticker's rate(1 hour) schedule, anchored when the runtime started
    scheduler = runtime.scheduler
    assert scheduler is not None
    # WHEN an hour passes
    events = scheduler.due(datetime.now(UTC) + timedelta(hours=1, seconds=1))
    runtime.put_events(events)
    # THEN one Scheduled Event for the ticker's rule reaches it
    wait_for(lambda: len(seen(runtime, "ticker")) == 1)
    [got] = seen(runtime, "ticker")
    assert got["type"] == "Scheduled Event"
    assert got["resources"][0].endswith(":rule/ticker-schedule-0")
