"""Each monitoring function's Lambda handler answers its sample AWS event (events/*/monitor_*)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aibackend.adapters.local import LocalObjectStore
from aibackend.cli import main
from aibackend.local.runtime import LocalRuntime
from aibackend.monitoring.profiles import DeltaRows, delta_id_for
from tests.integration.monitoring.conftest import ledger
from tests.support import running_runtime, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rt(
    monitoring_functions: Path, fraud_state: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRuntime]:
    state = tmp_path_factory.mktemp("monitor-handlers") / "state"
    with running_runtime(monitoring_functions, state, seed_state=fraud_state) as runtime:
        yield runtime


def _bucket(rt: LocalRuntime) -> LocalObjectStore:
    return LocalObjectStore(rt.settings.state_dir / "buckets" / "monitoring", bucket="monitoring")


def test_capture_handler_given_the_sqs_event_stores_records_profile_and_ledger_rows(
    rt: LocalRuntime, event: Callable[[str], dict[str, Any]]
) -> None:
    # GIVEN SQS's event carrying one capture message of two fraud predictions
    aws_event = event("sqs/monitor_capture")
    message = aws_event["Records"][0]
    # WHEN the Lambda handler gets it
    out = rt.hosts["monitor_capture"].invoke(aws_event)
    # THEN nothing failed, and the records, their profile delta and ledger rows are stored
    assert out == {"batchItemFailures": []}
    hour = "fraud/2026-11-27/10/" + message["messageId"]
    assert len(_bucket(rt).get(f"capture/{hour}.jsonl").splitlines()) == 2
    delta = DeltaRows.from_bytes(_bucket(rt).get(f"profiles/{hour}.bundle"))
    assert delta.deltas == ((delta_id_for(message["messageId"]), 2),)
    joined = ledger(rt).window(
        datetime(2026, 11, 27, tzinfo=UTC), datetime(2026, 11, 28, tzinfo=UTC)
    )
    assert joined.predictions == 2


def test_feedback_handler_given_the_aws_event_accepts_the_labels(
    rt: LocalRuntime, event: Callable[[str], dict[str, Any]]
) -> None:
    # GIVEN API Gateway's event for POST /v1/feedback with two labels
    aws_event = event("apigw/monitor_feedback")
    # WHEN the Lambda handler gets it
    out = rt.hosts["monitor_feedback"].invoke(aws_event)
    # THEN it answers 202 with what the ledger did with them
    assert out["statusCode"] == 202
    body = json.loads(out["body"])
    assert body["model"] == "fraud" and body["received"] == 2
    assert body["accepted"] + body["duplicates"] == 2


def test_labels_handler_given_the_s3_event_loads_the_file_and_quarantines_bad_rows(
    rt: LocalRuntime, event: Callable[[str], dict[str, Any]]
) -> None:
    # GIVEN a labels file with two good rows and one bad, and S3's notification for it
    aws_event = event("s3/monitor_labels")
    key = aws_event["Records"][0]["s3"]["object"]["key"]
    csv = "inference_id,label,observed_at\nlab-1,1,2026-11-27T09:00:00Z\nlab-2,0,\nlab-3,2,\n"
    _bucket(rt).put(key, csv.encode())
    # WHEN the Lambda handler gets the notification
    out = rt.hosts["monitor_labels"].invoke(aws_event)
    # THEN the good rows are in the ledger and the bad one is quarantined with its reason
    assert out["files"][0] | {"accepted": 0, "unknown_yet": 0} == {
        "key": key,
        "model": "fraud",
        "rows": 3,
        "accepted": 0,
        "unknown_yet": 0,
        "rejected": 1,
    }
    rejected = wait_for(
        lambda: _bucket(rt).get("labels-quarantine/fraud/2026-11-27/chargebacks.csv.rejected.csv")
    )
    assert b"label '2' is not 0/1" in rejected


def test_monitor_handler_given_the_scheduled_event_judges_the_last_hour_and_its_day(
    rt: LocalRuntime, event: Callable[[str], dict[str, Any]]
) -> None:
    # GIVEN EventBridge's hourly Scheduled Event of 11:05 UTC
    aws_event = event("schedule/monitor_models")
    # WHEN the Lambda handler gets it
    out = rt.hosts["monitor_models"].invoke(aws_event)
    # THEN it judged 10:00-11:00 and the day so far, and wrote both reports
    reports = out["reports"]
    assert [(r["window"]["span"], r["window"]["start"]) for r in reports] == [
        ("hour", "2026-11-27T10:00:00Z"),
        ("day", "2026-11-27T00:00:00Z"),
    ]
    assert [r["report_key"] for r in reports] == [
        "reports/fraud/hour-2026-11-27T10.json",
        "reports/fraud/day-2026-11-27.json",
    ]
    hour = json.loads(_bucket(rt).get(reports[0]["report_key"]))
    assert hour["baseline"]["profile"] is True and hour["baseline"]["problem"] is None


def test_a_labels_file_that_cannot_be_read_is_quarantined_whole_with_the_reason(
    rt: LocalRuntime, event: Callable[[str], dict[str, Any]]
) -> None:
    # GIVEN a labels file with the wrong header
    aws_event = event("s3/monitor_labels")
    key = "labels/fraud/broken.csv"
    aws_event["Records"][0]["s3"]["object"]["key"] = key
    _bucket(rt).put(key, b"id,outcome\nx,1\n")
    # WHEN the Lambda handler gets its notification
    out = rt.hosts["monitor_labels"].invoke(aws_event)
    # THEN nothing went to the ledger and the quarantine says why (retrying cannot fix it)
    assert out["files"][0]["rows"] == 0
    assert "header must be inference_id,label" in out["files"][0]["file_rejected"]
    rejected = _bucket(rt).get("labels-quarantine/fraud/broken.csv.rejected.csv").decode()
    assert rejected.splitlines()[1].startswith("0,")


def test_aib_monitor_run_judges_a_named_window_and_prints_its_summary(
    rt: LocalRuntime,
    monitoring_functions: Path,
    event: Callable[[str], dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the sample capture message (two predictions at 10:12 UTC) stored
    rt.hosts["monitor_capture"].invoke(event("sqs/monitor_capture"))
    capsys.readouterr()  # the handler's own output
    # WHEN `aib monitor run` judges that hour
    code = main(
        [
            "monitor",
            "run",
            "--model",
            "fraud",
            "--window",
            "hour:2026-11-27T10",
            "--functions",
            str(monitoring_functions),
            "--state-dir",
            str(rt.settings.state_dir),
        ]
    )
    # THEN it prints one line for the window and wrote its report
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith("fraud hour 2026-11-27 10:00: 2 rows; drift share ")
    assert out[0].endswith("-> reports/fraud/hour-2026-11-27T10.json")
    assert json.loads(_bucket(rt).get("reports/fraud/hour-2026-11-27T10.json"))["rows"] == 2


def test_aib_monitor_run_refuses_a_model_that_is_not_monitored(
    rt: LocalRuntime, monitoring_functions: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["monitor", "run", "--model", "churn", "--functions", str(monitoring_functions)]
    assert main([*args, "--state-dir", str(rt.settings.state_dir)]) == 2
    assert "churn are not monitored; monitored: fraud" in capsys.readouterr().err
