"""AWS event builders: output equals the committed samples, and Powertools parses every sample.

The samples in `events/` are this module's builders run with a frozen clock and seeded ids.
After a deliberate change to a builder, rewrite them with
`AIB_UPDATE_SAMPLES=1 .venv/bin/pytest tests/unit/events/test_shapes.py` and review the diff.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from aws_lambda_powertools.utilities.parser.models import (
    EventBridgeModel,
    S3EventNotificationEventBridgeModel,
    S3Model,
    SqsModel,
)
from pydantic import BaseModel

from aibackend.events.shapes import (
    Arns,
    Sequencer,
    encode_s3_key,
    eventbridge_event,
    md5_of_message_attributes,
    s3_notification,
    s3_object_created_event,
    scheduled_event,
    sqs_event,
)
from aibackend.ports import PutEvent, QueueMessage

EVENTS = Path(__file__).resolve().parents[3] / "events"
NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
ACCOUNT = "123456789012"
REGION = "eu-west-1"
S3_KEY = "incoming/2026/11/27/card batch=1 (ü).csv"


def seeded_uuid(seed: int) -> str:
    return str(uuid.UUID(int=random.Random(seed).getrandbits(128), version=4))


def seeded_token(seed: int, n: int) -> str:
    return base64.b64encode(random.Random(seed).randbytes(n)).decode()


def _message(seed: int, body: str, **kw: Any) -> QueueMessage:
    return QueueMessage(
        message_id=seeded_uuid(seed),
        receipt_handle="AQEB" + seeded_token(seed, 96),
        body=body,
        md5_of_body=hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        **kw,
    )


def build_sqs() -> dict[str, Any]:
    txn = json.loads((EVENTS / "payloads" / "transaction.json").read_text(encoding="utf-8"))
    sent = NOW - timedelta(seconds=3)
    first = _message(
        1,
        json.dumps(txn, separators=(",", ":")),
        message_attributes={
            "correlation_id": {"DataType": "String", "StringValue": seeded_uuid(11)},
            "schema_version": {"DataType": "Number", "StringValue": "1"},
        },
    )
    retried = _message(
        2,
        json.dumps({**txn, "transaction_id": "txn-0002", "amount": 18.5}, separators=(",", ":")),
        attributes={
            "ApproximateReceiveCount": "2",
            "SentTimestamp": str(int(sent.timestamp() * 1000)),
            "SenderId": "AROAEXAMPLEROLEID:aib-ingest",
            "ApproximateFirstReceiveTimestamp": str(int(sent.timestamp() * 1000) + 40),
        },
    )
    return sqs_event(
        [first, retried],
        queue_name="aib-transactions",
        region=REGION,
        account=ACCOUNT,
        now=NOW,
        sender_id="AROAEXAMPLEROLEID:aib-ingest",
    )


def build_custom() -> dict[str, Any]:
    entry = PutEvent(
        source="aib.payments",
        detail_type="Transaction Created",
        # The fraud_events function consumes this: a full transaction as the detail.
        detail=json.loads((EVENTS / "payloads" / "transaction.json").read_text(encoding="utf-8")),
    )
    return eventbridge_event(
        entry, event_id=seeded_uuid(3), time=NOW, account=ACCOUNT, region=REGION
    )


_S3 = {
    "bucket": "aib-raw-data",
    "key": S3_KEY,
    "size": 48213,
    "etag": "9b2cf535f27731c974343645a3985328",
    "sequencer": Sequencer().next(int(NOW.timestamp()) * 10**9),
    "time": NOW,
    "request_id": "C3D13FE58DE4C810",
    "region": REGION,
    "account": ACCOUNT,
    "source_ip": "203.0.113.10",
}


def build_s3_notification() -> dict[str, Any]:
    return s3_notification(**_S3)


def build_s3_eventbridge() -> dict[str, Any]:
    return s3_object_created_event(**_S3, event_id=seeded_uuid(4))


def build_schedule() -> dict[str, Any]:
    return scheduled_event(
        rule_name="aib-drift-hourly",
        time=NOW,
        event_id=seeded_uuid(5),
        region=REGION,
        account=ACCOUNT,
    )


SAMPLES: dict[str, tuple[Callable[[], dict[str, Any]], type[BaseModel]]] = {
    "sqs/queue_message": (build_sqs, SqsModel),
    "eventbridge/custom_event": (build_custom, EventBridgeModel),
    "s3/object_created_notification": (build_s3_notification, S3Model),
    "eventbridge/s3_object_created": (build_s3_eventbridge, S3EventNotificationEventBridgeModel),
    "schedule/scheduled_event": (build_schedule, EventBridgeModel),
}


def _sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_builder_output_equals_committed_sample(name: str) -> None:
    # GIVEN a frozen clock and seeded ids
    build, _ = SAMPLES[name]
    # WHEN the builder runs
    built = build()
    text = json.dumps(built, indent=2, ensure_ascii=False) + "\n"
    path = EVENTS / f"{name}.json"
    if os.environ.get("AIB_UPDATE_SAMPLES"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    # THEN it produces exactly the committed sample, key order and layout included
    assert built == _sample(name)
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_parses_with_powertools_model(name: str) -> None:
    # GIVEN a committed sample and the Powertools parser model for its source
    _, model = SAMPLES[name]
    # WHEN it is parsed
    parsed = model.model_validate(_sample(name))
    # THEN validation passes and nothing was dropped on the way
    assert parsed.model_dump(by_alias=True, exclude_unset=True).keys() == _sample(name).keys()


def test_s3_key_is_url_encoded_in_the_notification_but_not_in_eventbridge() -> None:
    # GIVEN a key with a space, an '=', parentheses and a non-ASCII letter
    # WHEN both S3 event shapes are built for it
    notification = build_s3_notification()["Records"][0]["s3"]["object"]["key"]
    detail = build_s3_eventbridge()["detail"]["object"]["key"]
    # THEN the notification form-encodes it (spaces as '+', '/' kept) and EventBridge does not
    assert notification == "incoming/2026/11/27/card+batch%3D1+%28%C3%BC%29.csv"
    assert unquote_plus(notification) == S3_KEY
    assert detail == S3_KEY


def test_encode_s3_key_keeps_safe_characters() -> None:
    # GIVEN keys with the characters S3 leaves alone, and '+', '~' which it escapes
    # WHEN encoded THEN only the latter change
    assert encode_s3_key("a/b-c_d.e*f") == "a/b-c_d.e*f"
    assert encode_s3_key("a+b~c") == "a%2Bb%7Ec"


def test_time_formats_follow_each_service() -> None:
    # GIVEN a time with milliseconds
    t = NOW + timedelta(milliseconds=123)
    # WHEN the S3 notification and the EventBridge event are built for it
    kw = {**_S3, "time": t}
    # THEN S3 keeps milliseconds and EventBridge whole seconds, both in UTC with 'Z'
    assert s3_notification(**kw)["Records"][0]["eventTime"] == "2026-11-27T12:00:00.123Z"
    assert s3_object_created_event(**kw, event_id="x")["time"] == "2026-11-27T12:00:00Z"


def test_sqs_message_attributes_come_out_in_lambda_casing() -> None:
    # GIVEN the sample's first message, sent with SQS API casing (DataType, StringValue)
    record = build_sqs()["Records"][0]
    # THEN Lambda's casing, with the empty list values Lambda adds, and SQS's attribute MD5
    assert record["messageAttributes"]["schema_version"] == {
        "stringValue": "1",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "Number",
    }
    assert record["md5OfMessageAttributes"] == md5_of_message_attributes(
        {
            "correlation_id": {"DataType": "String", "StringValue": seeded_uuid(11)},
            "schema_version": {"dataType": "Number", "stringValue": "1"},
        }
    )
    # AND the system attributes the local queue did not set are filled from the clock
    assert record["attributes"]["SentTimestamp"] == str(int(NOW.timestamp() * 1000))
    assert record["attributes"]["ApproximateReceiveCount"] == "1"


def test_md5_of_message_attributes_matches_sqs() -> None:
    # GIVEN attributes of each transport type
    attrs = {
        "correlation_id": {"DataType": "String", "StringValue": "c0ffee-42"},
        "schema_version": {"DataType": "Number", "StringValue": "1"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01hi"},
    }
    # WHEN hashed THEN the digest is what SQS returns for them (checked against moto's SQS)
    assert md5_of_message_attributes(attrs) == "b0d507960f210e7e4fac566f79df91f9"


def test_sqs_event_without_timestamps_or_clock_is_refused() -> None:
    # GIVEN a message with no SentTimestamp and no clock to fill it from
    msg = _message(9, "{}")
    # WHEN the event is built THEN the error names what is missing
    with pytest.raises(ValueError, match="no SentTimestamp; pass now="):
        sqs_event([msg], queue_name="q")


def test_defaults_are_the_local_account_and_region() -> None:
    # GIVEN no account or region
    # WHEN a scheduled event and an SQS event are built
    event = scheduled_event(rule_name="r", time=NOW, event_id="e")
    sqs = sqs_event([_message(9, "{}")], queue_name="q", now=NOW)
    # THEN they carry the local placeholders in every ARN
    assert event["resources"] == ["arn:aws:events:local:000000000000:rule/r"]
    assert sqs["Records"][0]["eventSourceARN"] == "arn:aws:sqs:local:000000000000:q"


def test_arns() -> None:
    # GIVEN an account and region WHEN ARNs are built THEN they follow each service's format
    arns = Arns(account=ACCOUNT, region=REGION)
    assert arns.bucket("b") == "arn:aws:s3:::b"
    assert arns.rule("r") == f"arn:aws:events:{REGION}:{ACCOUNT}:rule/r"
    assert arns.rule("r", bus="aib") == f"arn:aws:events:{REGION}:{ACCOUNT}:rule/aib/r"
    assert arns.event_bus("aib") == f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/aib"


def test_sequencer_strictly_increases_even_when_the_clock_stalls() -> None:
    # GIVEN a sequencer and a clock that stands still, then goes backwards
    seq = Sequencer()
    # WHEN sequencers are drawn
    values = [seq.next(1_000), seq.next(1_000), seq.next(999), seq.next(5_000)]
    # THEN each sorts after the one before, as fixed-width upper-case hex
    assert values == sorted(values) and len(set(values)) == 4
    assert all(len(v) == 18 and v == v.upper() for v in values)
