"""Events the local runtime delivers equal the AWS samples in events/ (frozen clock, seeded ids)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aibackend.adapters.local_bus import LocalEventBus, Target
from aibackend.adapters.local_queue import SqliteQueueService
from aibackend.events.schedule import parse_schedule
from aibackend.events.shapes import sqs_event
from aibackend.local import triggers
from aibackend.ports import PutEvent, QueueConfig

EVENTS = Path(__file__).resolve().parents[3] / "events"
FROZEN = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


def _bus_delivering_to(
    got: list[Any], tmp_path: Path, sample: dict[str, Any], *, bus: str = "default"
) -> LocalEventBus:
    """A bus with the sample's clock, id, account and region, delivering into `got`."""
    local = LocalEventBus(
        tmp_path / "events.db",
        deliver=lambda target, payload: got.append(payload),
        clock=FROZEN.timestamp,
        ids=lambda: sample["id"],
        account=sample["account"],
        region=sample["region"],
    )
    local.put_rule(
        "r",
        bus=bus,
        pattern={"source": [sample["source"]]},
        targets=[Target(kind="function", name="f")],
    )
    return local


def test_a_put_event_reaches_its_target_exactly_as_the_eventbridge_sample(tmp_path: Path) -> None:
    # GIVEN the sample's event as a PutEvents entry, and a bus with a frozen clock and seeded id
    sample = _sample("eventbridge/custom_event.json")
    got: list[Any] = []
    bus = _bus_delivering_to(got, tmp_path, sample, bus="aib")
    # WHEN it is put and the dispatcher runs
    entry = PutEvent(
        source=sample["source"], detail_type=sample["detail-type"], detail=sample["detail"]
    )
    assert bus.put_events([entry]).failed_count == 0
    bus.run_due(now=FROZEN.timestamp())
    # THEN the function receives the sample, byte for byte once serialized
    assert got == [sample]


def test_a_received_queue_message_becomes_the_sqs_sample_event(tmp_path: Path) -> None:
    # GIVEN the sample's message sent through the local queue engine at the frozen time
    sample = _sample("sqs/queue_message.json")
    record = sample["Records"][0]
    queues = SqliteQueueService(tmp_path / "q.db", clock=FROZEN.timestamp)
    queue_name = record["eventSourceARN"].rsplit(":", 1)[1]
    queue = queues.ensure(QueueConfig(name=queue_name))
    attrs = {
        k: {"DataType": v["dataType"], "StringValue": v["stringValue"]}
        for k, v in record["messageAttributes"].items()
    }
    queue.send(record["body"], message_attributes=attrs)
    [msg] = queue.receive(1)
    # WHEN the runtime builds the Lambda event for it
    event = sqs_event(
        [msg],
        queue_name=queue_name,
        region=record["awsRegion"],
        account=record["eventSourceARN"].split(":")[4],
    )
    # THEN it equals the sample but for what differs per message and per sender:
    # ids, receipt handle, timestamps and the sender's identity
    [built] = event["Records"]
    for key in ("messageId", "receiptHandle"):
        assert built.pop(key)
        record.pop(key)
    for key in ("ApproximateFirstReceiveTimestamp", "SentTimestamp", "SenderId"):
        assert built["attributes"].pop(key)
        record["attributes"].pop(key)
    assert built == record


def test_a_schedule_fires_exactly_the_scheduled_event_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the runtime's scheduler for the sample's rule, in the sample's account and region
    sample = _sample("schedule/scheduled_event.json")
    monkeypatch.setattr(triggers, "ACCOUNT", sample["account"])
    monkeypatch.setattr(triggers, "REGION", sample["region"])
    rule = sample["resources"][0].rsplit("/", 1)[1]
    scheduler = triggers.Scheduler(
        [(rule, parse_schedule("rate(1 hour)"))],
        put=lambda e: None,
        anchor=FROZEN - timedelta(hours=1),
    )
    got: list[Any] = []
    bus = _bus_delivering_to(got, tmp_path, sample)
    # WHEN its fire time comes and the event goes through the local bus
    bus.put_events(scheduler.due(FROZEN))
    bus.run_due(now=FROZEN.timestamp())
    # THEN the function receives the sample
    assert got == [sample]


def test_an_object_created_locally_reaches_a_function_as_the_eventbridge_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the sample's object, announced by the runtime in the sample's account and region
    sample = _sample("eventbridge/s3_object_created.json")
    monkeypatch.setattr(triggers, "ACCOUNT", sample["account"])
    monkeypatch.setattr(triggers, "REGION", sample["region"])
    obj = sample["detail"]["object"]
    entry = triggers.object_created_event(
        sample["detail"]["bucket"]["name"], obj["key"], obj["size"], obj["etag"]
    )
    got: list[Any] = []
    bus = _bus_delivering_to(got, tmp_path, sample)
    # WHEN it goes through the local bus at the frozen time
    bus.put_events([entry.model_copy(update={"time": FROZEN})])
    bus.run_due(now=FROZEN.timestamp())
    # THEN the function receives the sample, but for per-request values
    [event] = got
    for key in ("sequencer",):
        assert event["detail"]["object"].pop(key)
        sample["detail"]["object"].pop(key)
    for key in ("request-id", "source-ip-address"):
        assert event["detail"].pop(key)
        sample["detail"].pop(key)
    assert event == sample
