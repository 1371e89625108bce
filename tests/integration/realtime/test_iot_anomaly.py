"""iot_anomaly through the local runtime: readings in, `Anomaly Detected` out at the type's
threshold, chained to the reading and routed by alerts; the simulator's iot stream with no
event lost; the Lambda handler on the sample AWS event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aibackend.contracts import parse
from aibackend.contracts.iot import AnomalyDetectedV1
from aibackend.events.shapes import eventbridge_event
from aibackend.iot.devices import DEVICE_TYPES
from aibackend.local.runtime import LocalRuntime
from aibackend.ports import PutEvent
from aibackend.simulate.run import simulate
from tests.conftest import load_event
from tests.support import running_runtime, sqs_batch, wait_for

START = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def iot_runtime(
    iot_state: Path, iot_functions: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRuntime]:
    state = tmp_path_factory.mktemp("iot-runtime") / "state"
    with running_runtime(iot_functions, state, seed_state=iot_state) as rt:
        yield rt


def reading(device: str, i: int, value: float) -> PutEvent:
    return PutEvent(
        source="aib.iot",
        detail_type="Sensor Reading",
        detail={
            "schema_version": "1",
            "device_id": device,
            "device_type": "thermostat",
            "value": value,
            "unit": "celsius",
            "reading_time": (START + timedelta(seconds=10 * i)).isoformat(),
        },
    )


def anomalies(rt: LocalRuntime, device: str) -> list[dict[str, Any]]:
    return [
        e
        for e in rt.bus.archived(limit=1_000, detail_type="Anomaly Detected")
        if e["detail"]["device_id"] == device
    ]


def test_a_spike_after_a_steady_window_is_detected_chained_to_its_reading_and_alerted(
    iot_runtime: LocalRuntime,
) -> None:
    # GIVEN a thermostat reading a steady 21.0 (+- noise) for 20 readings
    t = DEVICE_TYPES["thermostat"]
    steady = [21.0 + t.noise * (0.5 if i % 2 else -0.5) for i in range(20)]
    for i, v in enumerate(steady):
        iot_runtime.bus.put_events([reading("th-spike", i, v)])
    # (all of them scored first: batches are scored concurrently, so a reading put later may
    # be scored before earlier ones, on the window stored by then)
    wait_for(lambda: settled(iot_runtime))
    # WHEN it jumps by 10 noise sds
    spike_id = iot_runtime.bus.put_events([reading("th-spike", 20, 21.0 + 10 * t.noise)])
    spike = spike_id.event_ids[0]
    # THEN one Anomaly Detected for that reading (the steady ones score below the threshold)
    found = wait_for(lambda: anomalies(iot_runtime, "th-spike"))
    assert [e["detail"]["caused_by"] for e in found] == [spike]
    detail = parse(found[0]).detail
    assert isinstance(detail, AnomalyDetectedV1)
    assert detail.correlation_id == spike
    assert detail.score >= detail.threshold
    assert detail.window.readings == 20 and detail.window.span_s == 190.0
    assert detail.model.name == "iot_thermostat"
    # AND alerts routed it to the topic, keyed by the device
    topic = iot_runtime.settings.state_dir / "topics" / "alerts.jsonl"

    def alert() -> dict[str, Any] | None:
        lines = topic.read_text().splitlines() if topic.exists() else []
        return next((a for a in map(json.loads, lines) if a["key"] == "th-spike"), None)

    routed = wait_for(alert)
    assert routed["kind"] == "anomaly" and routed["correlation_id"] == spike


def settled(rt: LocalRuntime) -> bool:
    """Every reading put so far is scored: delivered by the bus and consumed from the queue."""
    bus, queue = rt.bus.stats(), rt.queues.get("iot-anomaly-readings").stats()
    return bus.pending + bus.in_flight + queue.visible + queue.in_flight == 0


def batch(*events: dict[str, Any]) -> dict[str, Any]:
    """The SQS event Lambda invokes iot_anomaly with (its queue, `iot-anomaly-readings`)."""
    return sqs_batch("iot-anomaly-readings", *events)


def test_a_redelivered_reading_publishes_nothing_twice(iot_runtime: LocalRuntime) -> None:
    # GIVEN a spike after a steady window (the forest flags it), handled once
    host = iot_runtime.hosts["iot_anomaly"]
    t = DEVICE_TYPES["thermostat"]
    for i in range(20):
        iot_runtime.bus.put_events([reading("th-redelivered", i, 21.0 + t.noise * (i % 2 - 0.5))])
    wait_for(lambda: settled(iot_runtime))
    spike = eventbridge_event(
        reading("th-redelivered", 20, 21.0 + 10 * t.noise),
        event_id="reading-redelivered",
        time=datetime.now(UTC),
    )
    assert host.invoke(batch(spike)) == {"batchItemFailures": []}
    [first] = wait_for(lambda: anomalies(iot_runtime, "th-redelivered"))
    # WHEN SQS delivers the same event again, alone and twice in one batch
    assert host.invoke(batch(spike)) == {"batchItemFailures": []}
    assert host.invoke(batch(spike, spike)) == {"batchItemFailures": []}
    # THEN its anomaly was published once
    assert first["detail"]["caused_by"] == "reading-redelivered"
    assert len(anomalies(iot_runtime, "th-redelivered")) == 1


def test_a_reading_of_an_unknown_schema_version_is_refused_with_the_reason(
    iot_runtime: LocalRuntime,
) -> None:
    host = iot_runtime.hosts["iot_anomaly"]
    sample = load_event("eventbridge/sensor_reading")
    sample["id"] = "reading-v9"
    sample["detail"]["schema_version"] = "9"
    ok = load_event("eventbridge/sensor_reading")
    ok["id"] = "reading-v1-beside-it"
    # WHEN it comes in a batch beside a good reading THEN the batch succeeds: retrying cannot
    # help the refused one
    assert host.invoke(batch(sample, ok)) == {"batchItemFailures": []}
    # AND it is kept, as it came, in the queue's DLQ with the reason, never lost
    dlq = iot_runtime.queues.get("iot-anomaly-readings-dlq")
    [kept] = dlq.receive(10, visibility_timeout_s=0)
    assert json.loads(kept.body)["id"] == "reading-v9"
    reason = kept.message_attributes["ERROR_MESSAGE"]["StringValue"]
    assert reason.startswith("UnknownVersionError: ") and "unknown schema_version '9'" in reason


@pytest.mark.slow
def test_the_simulated_iot_stream_is_processed_with_no_event_lost(
    iot_runtime: LocalRuntime,
) -> None:
    # WHEN 3 s of fleet readings are simulated at 60/s
    report = simulate(
        iot_runtime.bus,
        iot_runtime.bus.db_path,
        "iot",
        rate=60,
        duration_s=3,
        seed=11,
        drain_timeout_s=30,
    )
    # THEN every reading was processed (none unrouted, failed or pending)
    assert report.lost.total == 0, report.lost
    assert report.put >= 150 and report.to_processed is not None
    assert report.to_processed.n == report.put
