"""Every function has its alarms (error rate, throttles, p99 duration) on its live alias, each
notifying the stack's encrypted, TLS-only alarm topic; thresholds come from the declaration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aibackend.catalog import load_function
from aibackend.errors import ConfigError
from tests.infra.conftest import SERVICE_CATALOG

ROOT = Path(__file__).resolve().parents[2]
CATALOG = SERVICE_CATALOG

pytestmark = pytest.mark.slow


def _topic(synth: Any) -> str:
    """Logical id of the alarm topic in AibShared (which holds other topics too)."""
    shared = synth.built.shared
    return str(shared.resolve(shared.alarm_topic.node.default_child.logical_id))


#: How a group stack names the alarm topic: by AibShared's export of its ARN.
IMPORTED_TOPIC = {"Fn::ImportValue": "AibShared-AlarmTopicArn"}


def _alarms(synth: Any) -> dict[str, list[dict[str, Any]]]:
    """Function name -> its alarms' properties (found by the description's `<name>: `)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for alarm in synth.service_resources("AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        name = props.get("AlarmDescription", "").split(":", 1)[0]
        out.setdefault(name, []).append(props)
    return out


def test_every_function_has_three_alarms_notifying_the_topic(synth: Any) -> None:
    # GIVEN the synthesized group stacks
    alarms = _alarms(synth)
    for spec in CATALOG.functions:
        # THEN each function has an error-rate, a throttle and a p99 duration alarm
        found = alarms[spec.name]
        assert len(found) == 3, spec.name
        for props in found:
            # AND each notifies AibShared's topic when it fires and when it recovers
            assert props["AlarmActions"] == [IMPORTED_TOPIC]
            assert props["OKActions"] == [IMPORTED_TOPIC]
            assert props["TreatMissingData"] == "notBreaching"
        # AND the p99 threshold is the declaration's, or 80% of the timeout
        (duration,) = [p for p in found if p.get("ExtendedStatistic") == "p99"]
        assert duration["Threshold"] == spec.alarms.p99_threshold_ms(spec.timeout_s)
        (rate,) = [p for p in found if "Metrics" in p]
        assert rate["Threshold"] == spec.alarms.error_rate_percent
        # AND the metrics are the live alias's (what every trigger invokes)
        dims = {d["Name"]: d["Value"] for d in duration["Dimensions"]}
        assert "Resource" in dims and "FunctionName" in dims


def test_the_alarm_topic_is_encrypted_and_tls_only(synth: Any) -> None:
    topic_id = _topic(synth)
    topic = synth.resources("AibShared", "AWS::SNS::Topic")[topic_id]
    assert "KmsMasterKeyId" in topic["Properties"]
    (policy,) = [
        p
        for p in synth.resources("AibShared", "AWS::SNS::TopicPolicy").values()
        if p["Properties"]["Topics"] == [{"Ref": topic_id}]
    ]
    denies = [
        s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
    ]
    assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in denies)
    # AND CloudWatch may use the key to publish, for this account's alarms only
    keys = synth.resources("AibShared", "AWS::KMS::Key").values()
    statements = [s for k in keys for s in k["Properties"]["KeyPolicy"]["Statement"]]
    (cw,) = [s for s in statements if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert "aws:SourceAccount" in cw["Condition"]["StringEquals"]


def test_a_p99_alarm_at_or_past_the_timeout_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "svc"
    d.mkdir()
    (d / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    (d / "function.toml").write_text("timeout_s = 2\n[alarms]\np99_ms = 2000\n")
    with pytest.raises(ConfigError, match=r"alarms.p99_ms \(2000\) must be below timeout_s"):
        load_function(d)


def _queue_alarm(alarms: list[dict[str, Any]], metric: str, queue_id: str) -> list[dict[str, Any]]:
    """The alarms on `metric` of the queue with logical id `queue_id`."""
    return [
        a
        for a in alarms
        if a.get("MetricName") == metric
        and a.get("Dimensions")
        == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]
    ]


def test_every_consumed_queue_alarms_on_dead_letters_and_on_its_oldest_message(
    synth: Any,
) -> None:
    # GIVEN AibShared: its queues (those with a redrive policy are the consumed queues, each
    # naming its DLQ) and its alarms
    topic = _topic(synth)
    queues = synth.resources("AibShared", "AWS::SQS::Queue")
    alarms = [
        a["Properties"] for a in synth.resources("AibShared", "AWS::CloudWatch::Alarm").values()
    ]
    sources = {
        qid: q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for qid, q in queues.items()
        if "RedrivePolicy" in q["Properties"]
    }
    triggers = {t.queue: t for spec in CATALOG.functions for t in spec.queues}
    # THEN every declared queue is there, the pipeline's among them
    assert len(sources) == len(triggers)
    assert {"pipeline-validate", "pipeline-score", "pipeline-store"} <= set(triggers)
    seen = set()
    for source, dlq in sources.items():
        # AND its DLQ alarms on any visible message, its source on the age of its oldest one
        (dead,) = _queue_alarm(alarms, "ApproximateNumberOfMessagesVisible", dlq)
        (oldest,) = _queue_alarm(alarms, "ApproximateAgeOfOldestMessage", source)
        name = oldest["AlarmDescription"].removeprefix("queue ").split(":", 1)[0]
        assert dead["AlarmDescription"].startswith(f"queue {name}: ")
        seen.add(name)
        assert (dead["Threshold"], dead["ComparisonOperator"]) == (0, "GreaterThanThreshold")
        # AND the age threshold is the declaration's (default 5 minutes)
        assert oldest["Threshold"] == triggers[name].oldest_message_alarm_s == 300
        for props in (dead, oldest):
            # AND both notify the alarm topic when they fire and when they recover
            assert props["AlarmActions"] == [{"Ref": topic}]
            assert props["OKActions"] == [{"Ref": topic}]
            assert props["Statistic"] == "Maximum" and props["Period"] == 60
    assert seen == set(triggers)


def test_the_ingest_functions_on_failure_queue_alarms_on_any_event(synth: Any) -> None:
    # GIVEN the pipeline's ingest function: an object trigger, invoked asynchronously
    fn = synth.built.functions["pipeline_ingest"]
    assert fn.failures is not None
    stack = synth.built.groups["pipeline"]
    failures_id = stack.resolve(fn.failures.node.default_child.logical_id)
    alarms = [
        a["Properties"]
        for a in synth.resources(stack.stack_name, "AWS::CloudWatch::Alarm").values()
    ]
    # THEN an event it gave up on (retries spent, or too old) raises an alarm on the topic
    (alarm,) = _queue_alarm(alarms, "ApproximateNumberOfMessagesVisible", failures_id)
    assert alarm["AlarmDescription"].startswith("function pipeline_ingest: ")
    assert alarm["AlarmActions"] == [IMPORTED_TOPIC]


def test_the_oldest_message_alarm_is_declared_per_queue(tmp_path: Path) -> None:
    # GIVEN a queue declaring its own threshold, and one declaring a threshold under a minute
    d = tmp_path / "svc"
    d.mkdir()
    (d / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    (d / "function.toml").write_text('[[queues]]\nqueue = "work"\noldest_message_alarm_s = 900\n')
    # WHEN they are loaded THEN the first keeps its threshold, the second is refused
    assert load_function(d).queues[0].oldest_message_alarm_s == 900
    (d / "function.toml").write_text('[[queues]]\nqueue = "work"\noldest_message_alarm_s = 5\n')
    with pytest.raises(ConfigError, match="oldest_message_alarm_s"):
        load_function(d)
