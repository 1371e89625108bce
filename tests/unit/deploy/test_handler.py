"""The deployer's Lambda handler answers the sample AWS events; its targets come from CDK."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from aibackend.catalog import load_function
from aibackend.deploy.service import Deployer
from aibackend.deploy.targets import ENV, parse_targets, targets_from_env
from aibackend.errors import ConfigError
from aibackend.local.host import FunctionHost

from .conftest import (
    PIPELINE,
    ROOT,
    SCORE,
    TARGETS,
    Clients,
    RecordingBus,
    alias,
    configuration,
    deployment_info,
    sample,
)


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Iterator[FunctionHost]:
    """functions/model_deployer loaded as `aib dev` loads it: no AIB_DEPLOY_TARGETS."""
    monkeypatch.delenv(ENV, raising=False)
    h = FunctionHost(load_function(ROOT / "functions" / "model_deployer"))
    h.load()
    yield h
    h.stop()


def test_without_targets_the_handler_leaves_rollouts_to_the_local_runtime(
    host: FunctionHost,
) -> None:
    # WHEN the local runtime delivers an approval (no CDK, so no targets)
    answer = host.invoke(sample("model_version_approved"))
    # THEN the deployer does nothing and says why
    assert answer == {"skipped": f"{ENV} is not set"}


def test_the_handler_answers_the_sample_approval_and_codedeploy_events(
    host: FunctionHost, clients: Clients, registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    c, bus = clients, RecordingBus()
    # GIVEN the handler deploying with stubbed clients; both fraud functions already serve v7
    module = sys.modules["model_deployer.handler"]
    monkeypatch.setattr(
        module, "DEPLOYER", Deployer(TARGETS, registry, c.lambda_, c.codedeploy, bus)
    )
    for target, version in ((SCORE, "13"), (PIPELINE, "41")):
        c.lambda_stub.add_response(
            "get_alias", alias(version), {"FunctionName": target.function_name, "Name": "live"}
        )
        c.lambda_stub.add_response(
            "get_function_configuration",
            configuration("7"),
            {"FunctionName": target.function_name, "Qualifier": version},
        )
    # WHEN the sample approval arrives
    answer = host.invoke(sample("model_version_approved"))
    # THEN it reports per function what it did
    assert [t["status"] for t in answer["targets"]] == ["live", "live"]

    # WHEN CodeDeploy's sample state change (a deployment not started by the deployer) arrives
    c.codedeploy_stub.add_response(
        "get_deployment", deployment_info("release 42"), {"deploymentId": "d-7X3K2QZ1A"}
    )
    answer = host.invoke(sample("codedeploy_deployment_state_change"))
    # THEN it is ignored
    assert answer == {"deployment_id": "d-7X3K2QZ1A", "ignored": "not started by the deployer"}
    c.assert_no_pending_responses()


def test_targets_read_from_the_document_cdk_writes() -> None:
    doc = {
        "functions": {
            "fraud_score": SCORE.model_dump(),
            "pipeline_score": PIPELINE.model_dump(),
        },
        "models": {"fraud": ["fraud_score", "pipeline_score"]},
    }
    assert parse_targets(json.dumps(doc)) == {"fraud": (SCORE, PIPELINE)}
    assert targets_from_env({ENV: json.dumps(doc)}) == {"fraud": (SCORE, PIPELINE)}
    assert targets_from_env({}) is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[]", "deployment targets document"),
        (
            '{"functions": {}, "models": {"fraud": ["fraud_score"]}}',
            "without a target: fraud_score",
        ),
        ("{not json", "redeploy the stack"),
    ],
)
def test_a_broken_targets_document_says_to_redeploy(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_targets(raw)
