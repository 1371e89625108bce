"""One contract, two adapters: the local event bus behaves like EventBridge (moto).

Each topology routes a rule on the `aib` bus to an SQS-style queue target: the local bus with
the local queue engine, EventBridge with an SQS queue under moto. moto's EventBridge needs
`jsonpath_ng` (the `moto[events]` extra) to deliver to targets.

Known differences, on purpose or from moto:
- moto's delivered envelope has no `account` key; EventBridge's (and the local bus's) has.
- An unknown bus is a per-entry failure locally; moto fails the whole call and real EventBridge
  silently accepts the event (aws/aws-sdk#186), so that case lives in the unit tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aibackend.adapters.eventbridge import EventBridgeBus
from aibackend.adapters.local_bus import LocalEventBus, Target
from aibackend.adapters.local_queue import SqliteQueueService
from aibackend.ports import EventBus, PutEvent, QueueConfig

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account
QUEUE = "tx-q"
PATTERN = {
    "source": ["aib.payments"],
    "detail-type": ["Transaction Created"],
    "detail": {"amount": [{"numeric": [">", 100]}]},
}
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@dataclass
class Topology:
    bus: EventBus
    #: Put the rule `tx` on bus `aib` with this pattern, targeting the queue.
    route: Callable[[dict[str, Any]], None]
    #: Bodies (parsed) of the messages the queue target received so far.
    delivered: Callable[[], list[dict[str, Any]]]


def _no_functions(target: Target, payload: Any) -> None:
    raise AssertionError("no function targets in the contract tests")


@contextmanager
def topology(kind: str, tmp_path: Path) -> Iterator[Topology]:
    if kind == "local":
        with SqliteQueueService(tmp_path / "queues.db") as queues:
            queues.ensure(QueueConfig(name=QUEUE))
            bus = LocalEventBus(
                tmp_path / "events.db",
                deliver=_no_functions,
                queues=queues,
                account=ACCOUNT,
                region=REGION,
            )

            def route(pattern: dict[str, Any]) -> None:
                bus.put_rule(
                    "tx", bus="aib", pattern=pattern, targets=[Target(kind="queue", name=QUEUE)]
                )

            def delivered() -> list[dict[str, Any]]:
                bus.run_due()
                return [json.loads(m.body) for m in queues.get(QUEUE).receive(10)]

            try:
                yield Topology(bus, route, delivered)
            finally:
                bus.close()
        return
    with mock_aws():
        events = boto3.client("events", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        events.create_event_bus(Name="aib")
        url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

        def route_aws(pattern: dict[str, Any]) -> None:
            events.put_rule(Name="tx", EventBusName="aib", EventPattern=json.dumps(pattern))
            events.put_targets(Rule="tx", EventBusName="aib", Targets=[{"Id": "q", "Arn": arn}])

        def delivered_aws() -> list[dict[str, Any]]:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
            return [json.loads(m["Body"]) for m in messages.get("Messages", [])]

        yield Topology(EventBridgeBus(events, env={}), route_aws, delivered_aws)


@pytest.fixture(params=["local", "aws"])
def topo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Topology]:
    with topology(request.param, tmp_path) as t:
        yield t


def tx(amount: float = 500.0, **kw: Any) -> PutEvent:
    fields: dict[str, Any] = {
        "source": "aib.payments",
        "detail_type": "Transaction Created",
        "detail": {"amount": amount, "currency": "EUR"},
        **kw,
    }
    return PutEvent(**fields)


def test_accepted_entries_get_distinct_event_ids(topo: Topology) -> None:
    # GIVEN three valid events WHEN they are put in one call
    result = topo.bus.put_events([tx(1.0), tx(2.0), tx(3.0)])
    # THEN each gets its own id and nothing fails
    assert result.failed_count == 0
    assert len(result.event_ids) == 3
    assert all(isinstance(i, str) and i for i in result.event_ids)
    assert len(set(result.event_ids)) == 3


def test_refused_entries_are_reported_by_index_and_the_rest_accepted(topo: Topology) -> None:
    # GIVEN a batch with a missing source, a missing detail-type and a detail that is not JSON
    entries = [
        tx(1.0),
        tx(source=""),
        tx(detail_type=""),
        tx(detail={"at": {1, 2}}),
        tx(2.0),
    ]
    # WHEN it is put
    result = topo.bus.put_events(entries)
    # THEN the three bad entries fail with EventBridge's codes, the two good ones are accepted
    assert [(i, code) for i, code, _ in result.failures] == [
        (1, "InvalidArgument"),
        (2, "InvalidArgument"),
        (3, "MalformedDetail"),
    ]
    assert "Source is a required argument" in result.failures[0][2]
    assert [i is not None for i in result.event_ids] == [True, False, False, False, True]


@pytest.mark.parametrize("n", [0, 11])
def test_put_events_takes_1_to_10_entries(topo: Topology, n: int) -> None:
    with pytest.raises(ValueError, match="1 to 10 entries"):
        topo.bus.put_events([tx()] * n)


def test_matching_events_are_routed_to_a_queue_target(topo: Topology) -> None:
    # GIVEN a rule for big transactions targeting a queue
    pytest.importorskip("jsonpath_ng", reason="moto[events] delivers to targets with it")
    topo.route(PATTERN)
    # WHEN a big, a small and an unrelated event are put
    result = topo.bus.put_events([tx(500.0), tx(5.0), tx(900.0, source="aib.orders")])
    # THEN only the big transaction reaches the queue, as an EventBridge event
    (body,) = topo.delivered()
    assert body["id"] == result.event_ids[0]
    assert body["version"] == "0"
    assert body["source"] == "aib.payments"
    assert body["detail-type"] == "Transaction Created"
    assert body["detail"] == {"amount": 500.0, "currency": "EUR"}
    assert body["region"] == REGION
    assert body["resources"] == []
    assert ISO_Z.match(body["time"]), body["time"]


def test_the_delivered_envelope_has_the_same_shape_in_both_topologies(tmp_path: Path) -> None:
    # GIVEN the same rule in both topologies
    pytest.importorskip("jsonpath_ng", reason="moto[events] delivers to targets with it")
    shapes: dict[str, dict[str, str]] = {}
    for kind in ("local", "aws"):
        (tmp_path / kind).mkdir()
        with topology(kind, tmp_path / kind) as t:
            t.route(PATTERN)
            # WHEN the same event is put
            t.bus.put_events([tx(250.0, resources=("arn:aws:s3:::uploads",))])
            (body,) = t.delivered()
            shapes[kind] = {k: type(v).__name__ for k, v in body.items()}
    # THEN the keys and their JSON types agree (moto leaves out `account`, EventBridge has it)
    local, aws = shapes["local"], shapes["aws"]
    assert set(local) - set(aws) == {"account"}
    assert {k: v for k, v in local.items() if k != "account"} == aws


def test_the_physical_bus_name_comes_from_the_environment(tmp_path: Path) -> None:
    # GIVEN CDK named the `aib` bus `aib-prod-bus` and told the function so
    pytest.importorskip("jsonpath_ng", reason="moto[events] delivers to targets with it")
    with mock_aws():
        events = boto3.client("events", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        events.create_event_bus(Name="aib-prod-bus")
        url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events.put_rule(Name="tx", EventBusName="aib-prod-bus", EventPattern=json.dumps(PATTERN))
        events.put_targets(
            Rule="tx", EventBusName="aib-prod-bus", Targets=[{"Id": "q", "Arn": arn}]
        )
        bus = EventBridgeBus(events, env={"AIB_BUS_AIB": "aib-prod-bus"})
        # WHEN a function puts an event on its logical bus `aib`
        result = bus.put_events([tx()])
        # THEN it lands on the physical bus
        assert result.failed_count == 0
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert json.loads(messages[0]["Body"])["id"] == result.event_ids[0]
