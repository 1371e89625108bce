"""`aib simulate` against a running local runtime (the way it drives `aib dev`: through the
state folder's bus file), and `Anomaly Detected` reaching the alerts sinks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aibackend.cli import main
from aibackend.ports import PutEvent
from tests.conftest import load_event
from tests.support import running_runtime, wait_for


def alerts_only(functions: Path, tmp_path: Path) -> Path:
    only = tmp_path / "functions"
    only.mkdir()
    (only / "alerts").symlink_to(functions / "alerts")
    return only


def printed_report(out: str) -> dict[str, Any]:
    """The JSON report in stdout (the in-process handlers' log lines go there too)."""
    start = out.index('{\n  "scenario"')
    report: dict[str, Any] = json.JSONDecoder().raw_decode(out, start)[0]
    return report


@pytest.mark.slow
def test_simulate_drives_the_payments_stream_through_the_runtime_with_no_event_lost(
    realtime_state: Path,
    realtime_functions: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a runtime serving fraud_events on a state with a trained fraud model
    state = tmp_path / "state"
    with running_runtime(realtime_functions, state, seed_state=realtime_state):
        # WHEN `aib simulate` puts 3 s of payments at 40 events/s on its bus
        code = main(
            [
                "--state-dir",
                str(state),
                "simulate",
                "--scenario",
                "payments",
                "--rate",
                "40",
                "--duration",
                "3",
                "--seed",
                "4",
                "--json",
            ]
        )
    report = printed_report(capsys.readouterr().out)
    # THEN every transaction was scored (none lost), with latencies, and the exit code says so
    assert report["lost"]["total"] == 0, report["lost"]
    assert code == 0
    assert 100 <= report["put"] <= 130
    scored = report["to_result"]["Transaction Scored"]
    assert scored["n"] == report["put"] == report["results"]["Transaction Scored"]
    assert 0 < scored["p50_ms"] <= scored["p99_ms"]


def test_simulate_reports_unrouted_events_as_lost_when_no_consumer_is_deployed(
    realtime_functions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a runtime without an IoT consumer (alerts only: it takes no Sensor Reading)
    state = tmp_path / "state"
    with running_runtime(alerts_only(realtime_functions, tmp_path), state):
        # WHEN a second of readings is simulated
        code = main(
            [
                "--state-dir",
                str(state),
                "simulate",
                "--scenario",
                "iot",
                "--rate",
                "20",
                "--duration",
                "1",
                "--drain-timeout",
                "1",
                "--json",
            ]
        )
    report = printed_report(capsys.readouterr().out)
    # THEN every one is counted lost as unrouted, and the command fails
    assert code == 1
    assert report["put"] > 0
    assert report["lost"] == {
        "refused": 0,
        "unrouted": report["put"],
        "failed": 0,
        "pending": 0,
        "no_result": 0,
        "total": report["put"],
    }


def test_an_anomaly_detected_event_is_routed_to_the_alerts_topic_keyed_by_device(
    realtime_functions: Path, tmp_path: Path
) -> None:
    # GIVEN a runtime serving alerts (sinks: log, and SNS = <state>/topics/alerts.jsonl)
    state = tmp_path / "state"
    sample = load_event("eventbridge/anomaly_detected")
    with running_runtime(alerts_only(realtime_functions, tmp_path), state) as rt:
        # WHEN the sample Anomaly Detected is put on the bus
        rt.bus.put_events(
            [PutEvent(source="aib.iot", detail_type="Anomaly Detected", detail=sample["detail"])]
        )
        topic = state / "topics" / "alerts.jsonl"
        lines = wait_for(lambda: topic.exists() and topic.read_text().splitlines())
    # THEN one anomaly alert, keyed and rate-limited by the device, with the chain's id
    assert isinstance(lines, list) and len(lines) == 1
    alert = json.loads(lines[0])
    assert alert["kind"] == "anomaly"
    assert alert["key"] == alert["rate_key"] == "thermostat-0042"
    assert alert["correlation_id"] == sample["detail"]["correlation_id"]
