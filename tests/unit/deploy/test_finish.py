"""CodeDeploy's final state change of a deployment the deployer started: the registry records
promotion or rollback (moto DynamoDB), and `Model Deployment Finished` announces it."""

from __future__ import annotations

from typing import Any

import pytest

from aibackend.contracts import InvalidDetailError, parse
from aibackend.contracts.registry import ModelDeploymentFinishedV1
from aibackend.deploy.finish import finish, state_change
from aibackend.deploy.rollout import DeploymentTag
from aibackend.deploy.service import Deployer
from aibackend.deploy.targets import Target

from .conftest import (
    PIPELINE,
    SCORE,
    TARGETS,
    Clients,
    RecordingBus,
    alias,
    configuration,
    deployment_info,
    sample,
)

APPROVAL_ID = "8f0e5a3c-2d41-4b7e-9c6a-3e5f7a9b1c2d"
TAG = DeploymentTag(
    approval=APPROVAL_ID,
    correlation_id=APPROVAL_ID,
    model="fraud",
    version=7,
    previous=6,
    function="fraud_score",
    actor="alice",
).describe()


def codedeploy_event(state: str, deployment_id: str = "d-ABC") -> dict[str, Any]:
    event = sample("codedeploy_deployment_state_change")
    event["detail"] = {**event["detail"], "state": state, "deploymentId": deployment_id}
    return event


def expect_serving(c: Clients, target: Target, version: str, pin: str, **kw: Any) -> None:
    c.lambda_stub.add_response(
        "get_alias", alias(version, **kw), {"FunctionName": target.function_name, "Name": "live"}
    )
    if "canary_to" not in kw:
        c.lambda_stub.add_response(
            "get_function_configuration",
            configuration(pin),
            {"FunctionName": target.function_name, "Qualifier": version},
        )


def deployer(c: Clients, registry: Any, bus: RecordingBus) -> Deployer:
    return Deployer(TARGETS, registry, c.lambda_, c.codedeploy, bus)


def finished(bus: RecordingBus) -> ModelDeploymentFinishedV1:
    (out,) = bus.events
    event = {"id": "x", "source": out.source, "detail-type": out.detail_type, "detail": out.detail}
    detail = parse(event).detail
    assert isinstance(detail, ModelDeploymentFinishedV1)
    return detail


def test_the_last_successful_deployment_ends_the_canary_and_promotes(
    clients: Clients, registry: Any
) -> None:
    c, bus = clients, RecordingBus()
    # GIVEN the canary of fraud v7 recorded, and both serving functions' aliases on pin 7
    registry.start_canary("fraud", 7, actor="alice", reason="approved")
    c.codedeploy_stub.add_response(
        "get_deployment", deployment_info(TAG), {"deploymentId": "d-ABC"}
    )
    expect_serving(c, SCORE, "13", "7")
    expect_serving(c, PIPELINE, "41", "7")

    # WHEN CodeDeploy reports fraud_score's deployment succeeded
    result = deployer(c, registry, bus).handle(codedeploy_event("SUCCESS"))

    # THEN v7 is production, v6 archived, and the canary is over
    assert registry.production("fraud").version == 7
    assert registry.get("fraud", 6).stage == "archived"
    assert registry.canary("fraud") is None
    actions = [e.action for e in registry.history("fraud", 7)]
    assert actions[-2:] == ["canary_passed", "promoted"]
    # AND the finished event says so, chained to the approval, caused by CodeDeploy's event
    detail = finished(bus)
    assert (detail.outcome, detail.function, detail.deployment_id) == (
        "succeeded",
        "fraud_score",
        "d-ABC",
    )
    assert (detail.model, detail.model_version, detail.previous_version) == ("fraud", 7, 6)
    assert detail.correlation_id == APPROVAL_ID
    assert detail.caused_by == sample("codedeploy_deployment_state_change")["id"]
    assert "v7 is production" in detail.reason
    assert result["outcome"] == "succeeded"
    c.assert_no_pending_responses()


def test_a_success_while_another_function_still_shifts_waits_for_it(
    clients: Clients, registry: Any
) -> None:
    c, bus = clients, RecordingBus()
    # GIVEN the canary of v7 recorded; pipeline_score's alias still splits traffic
    registry.start_canary("fraud", 7, actor="alice", reason="approved")
    c.codedeploy_stub.add_response(
        "get_deployment", deployment_info(TAG), {"deploymentId": "d-ABC"}
    )
    expect_serving(c, SCORE, "13", "7")
    expect_serving(c, PIPELINE, "40", "6", canary_to="41")

    # WHEN fraud_score's deployment succeeds
    deployer(c, registry, bus).handle(codedeploy_event("SUCCESS"))

    # THEN production stays v6 and the canary runs on; the event names what it waits for
    assert registry.production("fraud").version == 6
    assert registry.canary("fraud").candidate == 7
    detail = finished(bus)
    assert detail.outcome == "succeeded"
    assert "production moves once pipeline_score serve it too" in detail.reason
    c.assert_no_pending_responses()


def test_a_rolled_back_deployment_rejects_the_candidate_with_codedeploys_reason(
    clients: Clients, registry: Any
) -> None:
    c, bus = clients, RecordingBus()
    # GIVEN the canary of v7 recorded; CodeDeploy rolled fraud_score back on an alarm
    registry.start_canary("fraud", 7, actor="alice", reason="approved")
    info = deployment_info(
        TAG,
        status="Failed",
        error="One or more alarms have been activated: fraud_score-Errors (ALARM)",
        rollback="Automatic rollback of d-ABC started by alarm",
    )
    c.codedeploy_stub.add_response("get_deployment", info, {"deploymentId": "d-ABC"})
    expect_serving(c, PIPELINE, "40", "6")

    # WHEN CodeDeploy reports the failure
    deployer(c, registry, bus).handle(codedeploy_event("FAILURE"))

    # THEN production stays v6; v7 is archived, rejected by the canary, with the alarm named
    assert registry.production("fraud").version == 6
    assert registry.canary("fraud") is None
    v7 = registry.get("fraud", 7)
    assert (v7.stage, v7.approval.status, v7.approval.by) == ("archived", "rejected", "canary")
    assert "fraud_score-Errors" in v7.approval.reason
    assert registry.history("fraud", 7)[-1].action == "rolled_back"
    # AND the event carries the outcome and CodeDeploy's words
    detail = finished(bus)
    assert detail.outcome == "rolled_back"
    assert "ALARM_ACTIVE: One or more alarms" in detail.reason
    assert "Automatic rollback of d-ABC" in detail.reason
    c.assert_no_pending_responses()


def test_a_deployment_the_deployer_did_not_start_is_ignored(
    clients: Clients, registry: Any
) -> None:
    c, bus = clients, RecordingBus()
    # GIVEN a deployment of another team's pipeline, and CodeDeploy's own rollback deployment
    c.codedeploy_stub.add_response(
        "get_deployment", deployment_info("release 2026.11"), {"deploymentId": "d-ABC"}
    )
    rollback = deployment_info(TAG)
    rollback["deploymentInfo"]["rollbackInfo"] = {"rollbackTriggeringDeploymentId": "d-1"}
    c.codedeploy_stub.add_response("get_deployment", rollback, {"deploymentId": "d-RB"})
    d = deployer(c, registry, bus)

    # WHEN their state changes arrive
    first = d.handle(codedeploy_event("SUCCESS"))
    second = d.handle(codedeploy_event("FAILURE", "d-RB"))

    # THEN nothing is recorded or announced
    assert first["ignored"] == second["ignored"] == "not started by the deployer"
    assert bus.events == []
    assert registry.production("fraud").version == 6
    assert registry.get("fraud", 7).stage == "staging"


def test_a_direct_deployment_without_a_canary_promotes_or_archives(
    clients: Clients, registry: Any
) -> None:
    c = clients
    # GIVEN no canary in the registry (mode direct) and fraud_score alone serving fraud
    targets = {"fraud": (SCORE,)}
    c.codedeploy_stub.add_response("get_deployment", deployment_info(TAG), {"deploymentId": "d-1"})
    expect_serving(c, SCORE, "13", "7")
    # WHEN its deployment succeeds
    out = finish(
        state_change(codedeploy_event("SUCCESS", "d-1")), targets, registry, c.lambda_, c.codedeploy
    )
    # THEN the version is promoted directly
    assert out is not None and out.detail["outcome"] == "succeeded"
    assert registry.production("fraud").version == 7
    assert registry.history("fraud", 7)[-1].action == "promoted"
    c.assert_no_pending_responses()


def test_a_failed_direct_deployment_archives_the_version(clients: Clients, registry: Any) -> None:
    c = clients
    c.codedeploy_stub.add_response(
        "get_deployment", deployment_info(TAG, status="Failed"), {"deploymentId": "d-1"}
    )
    # WHEN a deployment without a registry canary fails (CodeDeploy gave no error text)
    out = finish(
        state_change(codedeploy_event("STOP", "d-1")),
        {"fraud": (SCORE,)},
        registry,
        c.lambda_,
        c.codedeploy,
    )
    # THEN the version is set aside with the state as the reason; production is unchanged
    assert out is not None and out.detail["outcome"] == "rolled_back"
    assert "deployment ended with state STOP" in out.detail["reason"]
    assert registry.get("fraud", 7).stage == "archived"
    assert registry.production("fraud").version == 6


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"detail-type": "Something Else"}, "expected CodeDeploy's"),
        ({"detail": {"state": "SUCCESS"}}, "detail.deploymentId is missing"),
        ({"detail": {"deploymentId": "d-1", "state": "START"}}, "'START' is not a final state"),
    ],
)
def test_a_malformed_state_change_is_refused_for_the_failure_queue(
    change: dict[str, Any], message: str
) -> None:
    event = {**sample("codedeploy_deployment_state_change"), **change}
    with pytest.raises(InvalidDetailError, match=message):
        state_change(event)


def test_a_failed_direct_promotion_rolls_the_registry_back(clients: Clients, registry: Any) -> None:
    c = clients
    # GIVEN `aib models promote fraud 7` recorded v7 as production before deploying it directly
    registry.promote("fraud", 7, actor="alice", reason="direct")
    c.codedeploy_stub.add_response(
        "get_deployment",
        deployment_info(TAG, status="Failed", error="fraud_score-DurationP99 (ALARM)"),
        {"deploymentId": "d-1"},
    )
    # WHEN CodeDeploy rolls the alias back
    out = finish(
        state_change(codedeploy_event("FAILURE", "d-1")),
        {"fraud": (SCORE,)},
        registry,
        c.lambda_,
        c.codedeploy,
    )
    # THEN the registry's production is the version the alias serves again, with the reason
    assert out is not None and out.detail["outcome"] == "rolled_back"
    assert registry.production("fraud").version == 6
    last = registry.history("fraud", 6)[-1]
    assert last.action == "rolled_back" and "fraud_score-DurationP99" in last.reason
