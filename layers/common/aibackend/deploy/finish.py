"""CodeDeploy's `Deployment State-change Notification` (SUCCESS, FAILURE, STOP) of a deployment
the deployer started -> the registry records the outcome, and `Model Deployment Finished` says
it on the platform bus.

- SUCCESS: the function's alias serves the new version. Once every function serving the model
  does (each alias on a version that pins it, with no traffic split left), the registry's canary
  passes (`end_canary(passed=True)`: the version becomes production) or, without a canary (mode
  `direct`, a first version), the version is promoted. Until then the registry waits for the
  other functions' deployments.
- FAILURE or STOP: CodeDeploy has shifted the alias back (automatic rollback on a failed
  deployment or an alarm); the registry's canary is rolled back (`end_canary(passed=False)`:
  the candidate is archived and rejected, production stays) with CodeDeploy's reason; without
  a canary, a version already recorded as production (`aib models promote` records a direct
  promotion before it is deployed) is rolled back in the registry, any other is archived. A
  function whose own deployment had already succeeded keeps the new version until the next
  `cdk deploy` pins production again (the event's reason names them).

Deployments the deployer did not start (no `DeploymentTag` in their description, among them
the rollback deployments CodeDeploy starts itself) are ignored. A redelivered state change
records nothing twice (the registry's changes are conditional) but is announced again:
consumers of the event deduplicate on `deployment_id`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aibackend.contracts.base import InvalidDetailError
from aibackend.contracts.registry import SOURCE, ModelDeploymentFinishedV1
from aibackend.deploy.rollout import DeploymentTag, targets_of
from aibackend.deploy.targets import Target, Targets
from aibackend.ports import ModelRegistry, PutEvent
from aibackend.settings import model_version_env

if TYPE_CHECKING:
    from mypy_boto3_codedeploy import CodeDeployClient
    from mypy_boto3_codedeploy.type_defs import DeploymentInfoTypeDef
    from mypy_boto3_lambda import LambdaClient

#: CodeDeploy's event, on the default bus.
CODEDEPLOY_SOURCE = "aws.codedeploy"
STATE_CHANGE = "CodeDeploy Deployment State-change Notification"
FINAL_STATES = ("SUCCESS", "FAILURE", "STOP")
#: The registry's actor for what the deployment decided.
ACTOR = "codedeploy"


@dataclass(frozen=True)
class StateChange:
    event_id: str
    deployment_id: str
    state: Literal["SUCCESS", "FAILURE", "STOP"]


def state_change(event: Mapping[str, Any]) -> StateChange:
    """The final state change in a CodeDeploy event, or an `InvalidDetailError` saying what
    is missing (the event goes to the failure queue with it)."""
    detail = event.get("detail")
    event_id = event.get("id")
    if event.get("detail-type") != STATE_CHANGE or not isinstance(detail, Mapping):
        raise InvalidDetailError(
            f"event {event_id}: expected CodeDeploy's {STATE_CHANGE!r} with a detail, got "
            f"{event.get('detail-type')!r}"
        )
    deployment_id, state = detail.get("deploymentId"), detail.get("state")
    if not isinstance(event_id, str) or not isinstance(deployment_id, str) or not deployment_id:
        raise InvalidDetailError(f"event {event_id}: detail.deploymentId is missing")
    if state not in FINAL_STATES:
        raise InvalidDetailError(
            f"event {event_id}: detail.state {state!r} is not a final state "
            f"({', '.join(FINAL_STATES)}); the rule should only deliver those"
        )
    return StateChange(event_id, deployment_id, state)


def finish(
    change: StateChange,
    targets: Targets,
    registry: ModelRegistry,
    lambda_: LambdaClient,
    codedeploy: CodeDeployClient,
) -> PutEvent | None:
    """Record the deployment's outcome; the event that announces it (None: not ours)."""
    info = codedeploy.get_deployment(deploymentId=change.deployment_id)["deploymentInfo"]
    tag = DeploymentTag.of(info.get("description"))
    if tag is None or (info.get("rollbackInfo") or {}).get("rollbackTriggeringDeploymentId"):
        return None  # not started by the deployer, or CodeDeploy's own rollback deployment
    if change.state == "SUCCESS":
        outcome: Literal["succeeded", "rolled_back"] = "succeeded"
        reason = _succeeded(tag, change.deployment_id, targets, registry, lambda_)
    else:
        outcome, reason = "rolled_back", failure_reason(info, change.state)
        reason = _rolled_back(tag, change.deployment_id, reason, targets, registry, lambda_)
    detail = ModelDeploymentFinishedV1(
        correlation_id=tag.correlation_id,
        caused_by=change.event_id,
        model=tag.model,
        model_version=tag.version,
        previous_version=tag.previous,
        function=tag.function,
        deployment_id=change.deployment_id,
        outcome=outcome,
        reason=reason[:512],
    )
    return PutEvent(
        source=SOURCE,
        detail_type=detail.detail_type,
        detail=detail.model_dump(mode="json", exclude_none=True),
    )


def failure_reason(info: DeploymentInfoTypeDef, state: str) -> str:
    """CodeDeploy's own words: the error (e.g. the alarm that fired) and the rollback."""
    parts = []
    error = info.get("errorInformation") or {}
    if error.get("message"):
        parts.append(f"{error.get('code', 'error')}: {error['message']}")
    rollback = (info.get("rollbackInfo") or {}).get("rollbackMessage")
    if rollback:
        parts.append(rollback)
    return "; ".join(parts) or f"deployment ended with state {state}"


def serves(lambda_: LambdaClient, target: Target, model: str, version: int) -> bool:
    """Whether all of the alias's traffic goes to a version that pins `model` at `version`."""
    alias = lambda_.get_alias(FunctionName=target.function_name, Name=target.alias)
    if (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights"):
        return False
    configuration = lambda_.get_function_configuration(
        FunctionName=target.function_name, Qualifier=alias["FunctionVersion"]
    )
    variables = (configuration.get("Environment") or {}).get("Variables") or {}
    return variables.get(model_version_env(model)) == str(version)


def _succeeded(
    tag: DeploymentTag,
    deployment_id: str,
    targets: Targets,
    registry: ModelRegistry,
    lambda_: LambdaClient,
) -> str:
    done = f"deployment {deployment_id} shifted all of {tag.function}'s traffic to v{tag.version}"
    waiting = [
        t.function
        for t in targets_of(tag.model, targets)
        if not serves(lambda_, t, tag.model, tag.version)
    ]
    if waiting:
        return f"{done}; production moves once {', '.join(waiting)} serve it too"
    reason = f"every function serving {tag.model} runs v{tag.version} ({done})"
    canary = registry.canary(tag.model)
    if canary is not None and canary.candidate == tag.version:
        registry.end_canary(tag.model, passed=True, actor=ACTOR, reason=reason)
    else:
        current = registry.production(tag.model)
        if current is None or current.version != tag.version:
            registry.promote(tag.model, tag.version, actor=ACTOR, reason=reason)
    return f"{reason}; v{tag.version} is production"


def _rolled_back(
    tag: DeploymentTag,
    deployment_id: str,
    why: str,
    targets: Targets,
    registry: ModelRegistry,
    lambda_: LambdaClient,
) -> str:
    reason = f"deployment {deployment_id} on {tag.function} rolled back: {why}"
    canary = registry.canary(tag.model)
    stage = registry.get(tag.model, tag.version).stage
    if canary is not None and canary.candidate == tag.version:
        registry.end_canary(tag.model, passed=False, actor=ACTOR, reason=reason)
    elif stage == "production":
        # A direct promotion is recorded before it is deployed: production returns to the
        # version the aliases serve again.
        registry.rollback(tag.model, actor=ACTOR, reason=reason)
    elif stage != "archived":
        # No canary to end (mode `direct` not yet promoted, a first version): set it aside.
        registry.set_stage(tag.model, tag.version, "archived", actor=ACTOR, reason=reason)
    kept = [
        t.function
        for t in targets_of(tag.model, targets)
        if t.function != tag.function and serves(lambda_, t, tag.model, tag.version)
    ]
    if kept:
        reason += f" (still serving v{tag.version} until the next deploy: {', '.join(kept)})"
    return reason
