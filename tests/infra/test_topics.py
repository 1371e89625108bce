"""SNS topics from `[resources] topics`: created once in AibShared under the services key,
TLS only, published to by the functions that declare them and no others
(functions/alerts declares `topics = { alerts = "publish" }`)."""

from __future__ import annotations

from typing import Any

import pytest

from aibackend.catalog import load_catalog
from aibackend.settings import resource_env
from infra.stacks.shared import SharedStack
from tests.infra.conftest import ROOT

pytestmark = pytest.mark.slow

#: How a group stack names the topic: by AibShared's export of its ARN.
IMPORTED = {"Fn::ImportValue": "AibShared-TopicAlertsArn"}


def alerts_topic(synth: Any) -> str:
    stack = synth.built.shared
    assert isinstance(stack, SharedStack)
    return str(stack.resolve(stack.topics["alerts"].topic_arn)["Ref"])


def publishers(synth: Any) -> set[str]:
    """Logical ids of the policies allowing sns:Publish on the alerts topic."""
    out = set()
    for name, policy in synth.service_resources("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            actions = actions if isinstance(actions, list) else [actions]
            if "sns:Publish" in actions and statement["Resource"] == IMPORTED:
                out.add(name)
    return out


def test_the_declared_topic_is_encrypted_and_refuses_plain_http(synth: Any) -> None:
    topic = alerts_topic(synth)
    props = synth.resources("AibShared", "AWS::SNS::Topic")[topic]["Properties"]
    assert props["DisplayName"] == "aibackend alerts"
    assert "KmsMasterKeyId" in props
    [policy] = [
        p
        for p in synth.resources("AibShared", "AWS::SNS::TopicPolicy").values()
        if {"Ref": topic} in p["Properties"]["Topics"]
    ]
    [deny] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_only_the_declaring_function_may_publish_and_finds_the_topic_by_env(synth: Any) -> None:
    declaring = [
        f.name for f in load_catalog(ROOT / "functions").functions if "alerts" in f.resources.topics
    ]
    assert declaring == ["alerts"]
    [policy] = publishers(synth)
    assert policy.startswith("AlertsRoleDefaultPolicy")
    fns = synth.service_resources("AWS::Lambda::Function")
    [alerts] = [f for f in fns.values() if f["Properties"]["Handler"] == "alerts.handler.handler"]
    env = alerts["Properties"]["Environment"]["Variables"]
    assert env[resource_env("topic", "alerts")] == IMPORTED
