"""`[[objects]]` triggers with `notification = "s3"`: the local runtime hands the function an S3
event notification built from S3's EventBridge event, as the rule's input transformer does on
AWS; a sibling trigger without it still gets the EventBridge event."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import S3Model

from aibackend.local.runtime import LocalRuntime
from tests.support import RECORDER, running_runtime, wait_for, write_functions
from tests.support import seen as seen_in

pytestmark = pytest.mark.slow

# Each handler appends the event it received to <state>/seen/<function>.jsonl.
HANDLER = (
    RECORDER
    + """
def handler(event, context):
    record(__package__, event)
"""
)

FUNCTIONS = {
    "on_report": """
        [[objects]]
        bucket = "raw"
        prefix = "reports/"
        suffix = ".csv"
        notification = "s3"
        """,
    "on_upload": """
        [[objects]]
        bucket = "raw"
        prefix = "reports/"
        """,
}


@pytest.fixture(params=[False, True], ids=["in-process", "isolated"])
def runtime(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalRuntime]:
    root = write_functions(
        tmp_path / "functions", {n: (toml, HANDLER) for n, toml in FUNCTIONS.items()}
    )
    with running_runtime(root, tmp_path / "state", isolate=request.param) as rt:
        yield rt


def seen(rt: LocalRuntime, name: str) -> list[dict[str, Any]]:
    return seen_in(rt.settings.state_dir, name)


def test_a_dropped_file_reaches_an_s3_notification_trigger_as_an_s3_event_notification(
    runtime: LocalRuntime,
) -> None:
    # GIVEN a file written into the raw bucket's folder, then renamed into place
    content = b"card,amount\n4242,12.5\n"
    folder = runtime.settings.state_dir / "buckets" / "raw" / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".day 1.csv.tmp"
    tmp.write_bytes(content)
    tmp.rename(folder / "day 1.csv")
    # WHEN both subscribers have been invoked
    wait_for(lambda: bool(seen(runtime, "on_report")) and bool(seen(runtime, "on_upload")))
    time.sleep(1.0)  # and nothing more arrives
    (notification,) = seen(runtime, "on_report")
    (eventbridge,) = seen(runtime, "on_upload")

    # THEN the s3 trigger's function got an S3 event notification that Powertools parses
    assert set(notification) == {"Records"}
    (record,) = S3Model.model_validate(notification).Records
    assert (record.eventSource, record.eventName) == ("aws:s3", "ObjectCreated:Put")
    assert record.s3.bucket.name == "raw"
    assert record.s3.bucket.arn == "arn:aws:s3:::raw"
    # the key as it is, not URL-encoded: what EventBridge's input transformer hands over on AWS
    assert record.s3.object.key == "reports/day 1.csv"
    assert record.s3.object.size == len(content)
    assert record.s3.object.eTag == hashlib.md5(content, usedforsecurity=False).hexdigest()
    assert record.s3.configurationId == "on_report"

    # AND the sibling trigger's function got S3's EventBridge event, for the same PUT
    assert (eventbridge["source"], eventbridge["detail-type"]) == ("aws.s3", "Object Created")
    obj = eventbridge["detail"]["object"]
    assert (obj["key"], obj["size"], obj["etag"]) == (
        "reports/day 1.csv",
        len(content),
        record.s3.object.eTag,
    )
    assert record.s3.object.sequencer == obj["sequencer"]
    assert record.responseElements.x_amz_request_id == eventbridge["detail"]["request-id"]
    assert notification["Records"][0]["eventTime"] == eventbridge["time"]


def test_a_file_outside_the_filter_reaches_neither_shape(runtime: LocalRuntime) -> None:
    # GIVEN a file under the prefix but without the s3 trigger's `.csv` suffix
    folder = runtime.settings.state_dir / "buckets" / "raw" / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".notes.tmp").write_text("not a report")
    (folder / ".notes.tmp").rename(folder / "notes.txt")
    # WHEN the prefix-only subscriber has seen it
    wait_for(lambda: bool(seen(runtime, "on_upload")))
    time.sleep(1.0)
    # THEN the s3 trigger's function was never invoked
    assert [e["detail"]["object"]["key"] for e in seen(runtime, "on_upload")] == [
        "reports/notes.txt"
    ]
    assert seen(runtime, "on_report") == []
