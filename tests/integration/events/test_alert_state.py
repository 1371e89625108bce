"""alerts' state on both adapters (SQLite locally, DynamoDB on AWS through moto): the same
contract; and the SNS sink publishing to a topic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aibackend.contracts import parse
from functions.alerts.alerting import alert_of
from functions.alerts.sinks import SnsSink, encode
from functions.alerts.state import AlertState, DynamoAlertState, SqliteAlertState
from tests.conftest import load_event
from tests.support import create_data_table

TABLE = "aib-alerts-state"
T0 = 1_795_000_000.0


@pytest.fixture(params=["sqlite", "dynamodb"])
def state(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AlertState]:
    if request.param == "sqlite":
        yield SqliteAlertState(tmp_path / "alerts-state.db")
        return
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        ddb = boto3.client("dynamodb")
        create_data_table(ddb, TABLE)
        yield DynamoAlertState(TABLE, client=ddb)


def test_a_claim_is_held_by_its_owner_until_it_expires(state: AlertState) -> None:
    assert state.claim("dedup#txn-1", "evt-a", T0, ttl_s=60)
    assert not state.claim("dedup#txn-1", "evt-b", T0 + 10, ttl_s=60)  # someone else's
    assert state.claim("dedup#txn-1", "evt-a", T0 + 20, ttl_s=60)  # a retry of the owner
    assert state.claim("dedup#txn-2", "evt-b", T0 + 20, ttl_s=60)  # another key is free
    assert state.claim("dedup#txn-1", "evt-c", T0 + 81, ttl_s=60)  # expired: taken over
    assert not state.claim("dedup#txn-1", "evt-a", T0 + 82, ttl_s=60)


def test_a_counter_counts_until_it_expires_then_starts_again(state: AlertState) -> None:
    assert state.count("suppressed#card-1", T0) == 0
    assert [state.increment("suppressed#card-1", T0 + i, ttl_s=100) for i in range(3)] == [1, 2, 3]
    assert state.count("suppressed#card-1", T0 + 50) == 3
    assert state.count("suppressed#card-1", T0 + 101) == 0
    assert state.increment("suppressed#card-1", T0 + 101, ttl_s=100) == 1
    assert state.count("suppressed#card-2", T0) == 0


def test_the_sns_sink_publishes_the_alert_json_to_the_topic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        topic = sns.create_topic(Name="aib-alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="alerts-subscriber")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
        alert = alert_of(parse(load_event("eventbridge/fraud_suspected")))
        SnsSink(topic, client=sns).send(alert)
        [message] = sqs.receive_message(QueueUrl=queue)["Messages"]
        envelope: dict[str, Any] = json.loads(message["Body"])
        assert envelope["Message"] == encode(alert).decode()
        assert envelope["Subject"] == "aib alert: Fraud Suspected txn-0001"
        assert envelope["MessageAttributes"]["kind"]["Value"] == "fraud"
