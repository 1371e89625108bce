"""A queue filled by a rule (`[[queues.events]]`, fraud_events' `fraud-events-transactions`):
the rule lives in AibShared beside its queue, and the consumer may reject into the DLQ."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.slow

QUEUE, RULE = "AWS::SQS::Queue", "AWS::Events::Rule"


def _one(resources: dict[str, dict[str, Any]], prefix: str) -> tuple[str, dict[str, Any]]:
    (item,) = ((k, v) for k, v in resources.items() if k.startswith(prefix))
    return item


def test_the_rule_sends_matching_events_to_the_queue_and_undeliverable_ones_to_its_dlq(
    synth: Any,
) -> None:
    # GIVEN fraud_events' declaration: its queue is filled by a rule on the platform bus
    shared = "AibShared"
    queue_id, queue = _one(synth.resources(shared, QUEUE), "QueuesFraudEventsTransactionsQueue")
    # (SQS deletes what outlives its retention without a trace: the queue keeps it 14 days)
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 86_400
    dlq_id, _ = _one(synth.resources(shared, QUEUE), "QueuesFraudEventsTransactionsDeadLetters")
    rule_id, rule = _one(synth.resources(shared, RULE), "QueuesFraudEventsTransactionsRule0")
    p = rule["Properties"]
    # THEN the rule is on AibData's bus, with the declared pattern, its target the queue
    assert p["EventBusName"] == {"Fn::ImportValue": "AibData-BusName"}
    assert p["EventPattern"] == {"source": ["aib.payments"], "detail-type": ["Transaction Created"]}
    (target,) = p["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    # AND EventBridge retries a failed put (its defaults), then keeps the event in the DLQ
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq_id, "Arn"]}}
    # AND only EventBridge may send to the queue through its policy, and only SendMessage
    policies = [
        v["Properties"]
        for v in synth.resources(shared, "AWS::SQS::QueuePolicy").values()
        if {"Ref": queue_id} in v["Properties"]["Queues"]
    ]
    allowed = [
        s for pol in policies for s in pol["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"
    ]
    assert allowed and all(s["Principal"] == {"Service": "events.amazonaws.com"} for s in allowed)
    assert {s["Action"] for s in allowed} == {"sqs:SendMessage"}
    # AND the key the queue is encrypted under lets EventBridge rules of the account use it
    key = next(iter(synth.resources(shared, "AWS::KMS::Key").values()))
    services = [
        s["Principal"].get("Service")
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if isinstance(s.get("Principal"), dict)
    ]
    assert "events.amazonaws.com" in services
    assert rule_id


def test_the_consumer_reads_the_queue_in_batches_and_may_send_only_to_its_dlq(synth: Any) -> None:
    stack = synth.stack_of("fraud_events")
    mappings = [
        m["Properties"] for m in synth.resources(stack, "AWS::Lambda::EventSourceMapping").values()
    ]
    fn_id, fn = _one(synth.resources(stack, "AWS::Lambda::Function"), "FraudEventsFunction")
    # THEN its queue feeds it in batches of 10, at most two at a time, reporting failures per
    # message; no rule invokes it, so it has no asynchronous invoke configuration
    (mapping,) = [m for m in mappings if "FraudEventsTransactions" in str(m["EventSourceArn"])]
    assert mapping["BatchSize"] == 10
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 2}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    configs = synth.resources(stack, "AWS::Lambda::EventInvokeConfig")
    assert not [c for c in configs if c.startswith("FraudEvents")]
    # AND it learns the DLQ's URL and may send there (the messages it rejects), and to the
    # capture queue (functions/monitoring.toml captures the fraud model), nowhere else
    variables = fn["Properties"]["Environment"]["Variables"]
    assert "Fn::ImportValue" in variables["AIB_QUEUE_FRAUD_EVENTS_TRANSACTIONS_DLQ"]
    _, policy = _one(synth.resources(stack, "AWS::IAM::Policy"), "FraudEventsRoleDefaultPolicy")
    sends = [
        s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if "sqs:SendMessage" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    ]
    (send,) = sends
    assert send["Resource"] == [
        {"Fn::ImportValue": "AibShared-QueueFraudEventsTransactionsDlqArn"},
        {"Fn::ImportValue": "AibShared-QueueInferenceCaptureArn"},
    ]
    assert fn_id
