"""An approval becomes, per serving function, a published version with the new pin and a
CodeDeploy deployment of its alias: exact calls, redelivery, refusals."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from botocore.stub import ANY

from aibackend.deploy.rollout import (
    ACTIVE,
    DeploymentBusyError,
    DeploymentTag,
    UnknownModelError,
    UnsupportedModeError,
    roll_out,
)
from aibackend.deploy.targets import ALL_AT_ONCE, Target

from .conftest import (
    PIN,
    PIPELINE,
    SCORE,
    TARGETS,
    Clients,
    alias,
    approval,
    configuration,
    deployment_info,
)

APPROVAL_ID = "8f0e5a3c-2d41-4b7e-9c6a-3e5f7a9b1c2d"  # the sample's event id


def tag(target: Target) -> str:
    return DeploymentTag(
        approval=APPROVAL_ID,
        correlation_id=APPROVAL_ID,
        model="fraud",
        version=7,
        previous=6,
        function=target.function,
        actor="alice",
    ).describe()


def expected_appspec(target: Target, current: str, new: str) -> dict[str, Any]:
    return {
        "applicationName": target.application,
        "deploymentGroupName": target.deployment_group,
        "deploymentConfigName": target.deployment_config,
        "description": tag(target),
        "revision": {
            "revisionType": "AppSpecContent",
            "appSpecContent": {"content": ANY, "sha256": ANY},
        },
    }


def expect_alias(c: Clients, target: Target, current: str, pin: str, **kw: Any) -> None:
    c.lambda_stub.add_response(
        "get_alias", alias(current, **kw), {"FunctionName": target.function_name, "Name": "live"}
    )
    c.lambda_stub.add_response(
        "get_function_configuration",
        configuration(pin),
        {"FunctionName": target.function_name, "Qualifier": current},
    )


def expect_no_deployment(c: Clients, target: Target, running: list[str] | None = None) -> None:
    c.codedeploy_stub.add_response(
        "list_deployments",
        {"deployments": running or []},
        {
            "applicationName": target.application,
            "deploymentGroupName": target.deployment_group,
            "includeOnlyStatuses": list(ACTIVE),
        },
    )


def expect_publish(c: Clients, target: Target, *, new: str, latest_pin: str = "6") -> None:
    """$LATEST gets pin 7 (every other variable kept), then is published, both guarded."""
    name = {"FunctionName": target.function_name}
    c.lambda_stub.add_response("get_function_configuration", configuration(latest_pin), name)
    if latest_pin != "7":
        variables = configuration("7")["Environment"]["Variables"]
        c.lambda_stub.add_response(
            "update_function_configuration",
            configuration("7", revision="rev-2", status="InProgress"),
            {**name, "Environment": {"Variables": variables}, "RevisionId": "rev-1"},
        )
        # Lambda's function_updated waiter, then the configuration it settled on.
        c.lambda_stub.add_response("get_function_configuration", configuration("7"), name)
        c.lambda_stub.add_response(
            "get_function_configuration", configuration("7", revision="rev-2", sha="5ha"), name
        )
    revision, sha = ("rev-2", "5ha") if latest_pin != "7" else ("rev-1", "c0de")
    c.lambda_stub.add_response(
        "publish_version",
        {"Version": new},
        {**name, "CodeSha256": sha, "RevisionId": revision, "Description": "fraud v7"},
    )


def expect_deployment(c: Clients, target: Target, current: str, new: str, deployment: str) -> None:
    c.codedeploy_stub.add_response(
        "create_deployment", {"deploymentId": deployment}, expected_appspec(target, current, new)
    )


def test_an_approval_publishes_the_new_pin_and_starts_a_canary_on_every_serving_function(
    clients: Clients, registry: Any
) -> None:
    c = clients
    # GIVEN fraud_score's alias on version 12 and pipeline_score's on 40, both pinning fraud v6
    for target, current, new, dep in ((SCORE, "12", "13", "d-1"), (PIPELINE, "40", "41", "d-2")):
        expect_alias(c, target, current, "6")
        expect_no_deployment(c, target)
        expect_publish(c, target, new=new)
        expect_deployment(c, target, current, new, dep)

    # WHEN fraud v7 is approved for a canary
    outcomes = roll_out(approval(), TARGETS, registry, c.lambda_, c.codedeploy)

    # THEN each function's alias is being shifted from its version to the new one
    assert [
        (o.function, o.status, o.current_version, o.target_version, o.deployment_id)
        for o in outcomes
    ] == [
        ("fraud_score", "started", "12", "13", "d-1"),
        ("pipeline_score", "started", "40", "41", "d-2"),
    ]
    c.assert_no_pending_responses()
    # AND each AppSpec names the function, its live alias and both versions, with its digest
    for spec, (target, current, new) in zip(
        c.appspecs, ((SCORE, "12", "13"), (PIPELINE, "40", "41")), strict=True
    ):
        assert hashlib.sha256(spec["content"].encode()).hexdigest() == spec["sha256"]
        assert json.loads(spec["content"]) == {
            "version": 0.0,
            "Resources": [
                {
                    target.function: {
                        "Type": "AWS::Lambda::Function",
                        "Properties": {
                            "Name": target.function_name,
                            "Alias": "live",
                            "CurrentVersion": current,
                            "TargetVersion": new,
                        },
                    }
                }
            ],
        }
    # AND the registry records the canary beside production v6
    canary = registry.canary("fraud")
    assert (canary.candidate, canary.champion, canary.percent, canary.window_s) == (7, 6, 10, 300)
    assert registry.production("fraud").version == 6


def test_a_redelivered_approval_starts_nothing_twice(clients: Clients, registry: Any) -> None:
    c = clients
    # GIVEN the approval was handled once: fraud_score's canary is running (its alias splits
    # traffic), pipeline_score's deployment already finished (its alias serves pin 7)
    registry.start_canary("fraud", 7, actor="alice", reason="first delivery")
    expect_alias(c, SCORE, "12", "6", canary_to="13")
    expect_no_deployment(c, SCORE, running=["d-1"])
    c.codedeploy_stub.add_response(
        "get_deployment", deployment_info(tag(SCORE), status="InProgress"), {"deploymentId": "d-1"}
    )
    expect_alias(c, PIPELINE, "41", "7")

    # WHEN the same approval arrives again
    outcomes = roll_out(approval(), TARGETS, registry, c.lambda_, c.codedeploy)

    # THEN no configuration is changed, no version published, no deployment created
    assert [(o.function, o.status, o.deployment_id) for o in outcomes] == [
        ("fraud_score", "in_progress", "d-1"),
        ("pipeline_score", "live", None),
    ]
    c.assert_no_pending_responses()
    # AND the registry's canary is the first one
    assert registry.canary("fraud").reason == "first delivery"


def test_a_concurrent_delivery_that_lost_the_race_finds_the_winners_deployment(
    clients: Clients, registry: Any
) -> None:
    c = clients
    # GIVEN no deployment yet when this delivery looks, but one by then when it creates its own
    expect_alias(c, SCORE, "12", "6")
    expect_no_deployment(c, SCORE)
    expect_publish(c, SCORE, new="13", latest_pin="7")  # the winner already set the pin
    c.codedeploy_stub.add_client_error(
        "create_deployment",
        service_error_code="DeploymentLimitExceededException",
        service_message="The deployment group already has an active deployment",
        expected_params=expected_appspec(SCORE, "12", "13"),
    )
    expect_no_deployment(c, SCORE, running=["d-9"])
    c.codedeploy_stub.add_response(
        "get_deployment", deployment_info(tag(SCORE), status="InProgress"), {"deploymentId": "d-9"}
    )

    # WHEN it rolls out to fraud_score alone
    outcomes = roll_out(approval(), {"fraud": (SCORE,)}, registry, c.lambda_, c.codedeploy)

    # THEN it reports the winner's deployment instead of failing or starting another
    assert [(o.status, o.deployment_id) for o in outcomes] == [("in_progress", "d-9")]
    c.assert_no_pending_responses()


def test_another_approvals_running_deployment_makes_it_retry(
    clients: Clients, registry: Any
) -> None:
    c = clients
    # GIVEN fraud_score's group runs the deployment of another approval
    other = DeploymentTag(
        approval="another-approval",
        correlation_id="another-approval",
        model="fraud",
        version=5,
        function="fraud_score",
        actor="bo",
    ).describe()
    expect_alias(c, SCORE, "12", "6")
    expect_no_deployment(c, SCORE, running=["d-0"])
    c.codedeploy_stub.add_response(
        "get_deployment", deployment_info(other, status="InProgress"), {"deploymentId": "d-0"}
    )

    # WHEN fraud v7 is approved
    # THEN the delivery fails, naming the deployment in the way and what to do
    with pytest.raises(
        DeploymentBusyError, match=r"d-0 \(fraud v5, approval event another-approval\)"
    ):
        roll_out(approval(), {"fraud": (SCORE,)}, registry, c.lambda_, c.codedeploy)
    c.assert_no_pending_responses()


def test_an_unknown_model_fails_with_the_models_served_and_touches_nothing(
    clients: Clients, registry: Any
) -> None:
    # GIVEN targets for fraud only (sentiment's list is empty)
    # WHEN an approval names a model no function serves
    # THEN it fails for the failure queue, saying which models can be deployed
    with pytest.raises(UnknownModelError, match=r"no function serves model 'churn'.*served: fraud"):
        roll_out(approval(model="churn"), TARGETS, registry, clients.lambda_, clients.codedeploy)
    with pytest.raises(UnknownModelError, match="'sentiment'"):
        roll_out(
            approval(model="sentiment"), TARGETS, registry, clients.lambda_, clients.codedeploy
        )
    # AND no AWS call was made, no canary recorded (the stubs had nothing queued)
    assert registry.canary("fraud") is None


def test_shadow_is_refused_on_aws_before_anything_changes(clients: Clients, registry: Any) -> None:
    # WHEN the approval asks for a shadow
    # THEN it is refused with what to approve instead
    with pytest.raises(UnsupportedModeError, match="approve with mode 'canary' or 'direct'"):
        roll_out(approval(mode="shadow"), TARGETS, registry, clients.lambda_, clients.codedeploy)
    assert registry.canary("fraud") is None


def test_direct_shifts_all_at_once_through_codedeploy_without_a_registry_canary(
    clients: Clients, registry: Any
) -> None:
    c = clients
    # GIVEN fraud_score on version 12 pinning v6
    expect_alias(c, SCORE, "12", "6")
    expect_no_deployment(c, SCORE)
    expect_publish(c, SCORE, new="13")
    c.codedeploy_stub.add_response(
        "create_deployment",
        {"deploymentId": "d-3"},
        {**expected_appspec(SCORE, "12", "13"), "deploymentConfigName": ALL_AT_ONCE},
    )
    # WHEN v7 is approved with mode direct
    outcomes = roll_out(
        approval(mode="direct"), {"fraud": (SCORE,)}, registry, c.lambda_, c.codedeploy
    )
    # THEN CodeDeploy shifts everything at once (alarms and rollback still apply)
    assert [o.deployment_id for o in outcomes] == ["d-3"]
    c.assert_no_pending_responses()
    # AND the registry has no canary: the finish step promotes
    assert registry.canary("fraud") is None


def test_a_tag_reads_back_and_foreign_descriptions_are_not_tags() -> None:
    description = tag(SCORE)
    assert DeploymentTag.of(description) == DeploymentTag.model_validate_json(
        description.removeprefix("aib-deploy ")
    )
    assert DeploymentTag.of("Deployed by the release pipeline") is None
    assert DeploymentTag.of("aib-deploy {not json") is None
    assert DeploymentTag.of(None) is None
    assert PIN == "AIB_MODEL_FRAUD_VERSION"
