"""Every function has its alarms (error rate, throttles, p99 duration) on its live alias, each
notifying the stack's encrypted, TLS-only alarm topic; thresholds come from the declaration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aibackend.catalog import load_catalog, load_function
from aibackend.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog(ROOT / "functions")

pytestmark = pytest.mark.slow


def _topic(synth: Any) -> str:
    """Logical id of the stack's alarm topic (the stack may hold other topics)."""
    services = synth.built.services
    return str(services.resolve(services.alarm_topic.node.default_child.logical_id))


def _alarms(synth: Any) -> dict[str, list[dict[str, Any]]]:
    """Function name -> its alarms' properties (found by the description's `<name>: `)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for alarm in synth.resources("AibServices", "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        name = props.get("AlarmDescription", "").split(":", 1)[0]
        out.setdefault(name, []).append(props)
    return out


def test_every_function_has_three_alarms_notifying_the_topic(synth: Any) -> None:
    # GIVEN the synthesized services stack
    topic = _topic(synth)
    alarms = _alarms(synth)
    for spec in CATALOG.functions:
        # THEN each function has an error-rate, a throttle and a p99 duration alarm
        found = alarms[spec.name]
        assert len(found) == 3, spec.name
        for props in found:
            # AND each notifies the topic when it fires and when it recovers
            assert props["AlarmActions"] == [{"Ref": topic}]
            assert props["OKActions"] == [{"Ref": topic}]
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
    topic = synth.resources("AibServices", "AWS::SNS::Topic")[topic_id]
    assert "KmsMasterKeyId" in topic["Properties"]
    (policy,) = [
        p
        for p in synth.resources("AibServices", "AWS::SNS::TopicPolicy").values()
        if p["Properties"]["Topics"] == [{"Ref": topic_id}]
    ]
    denies = [
        s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
    ]
    assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in denies)
    # AND CloudWatch may use the key to publish, for this account's alarms only
    keys = synth.resources("AibServices", "AWS::KMS::Key").values()
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
