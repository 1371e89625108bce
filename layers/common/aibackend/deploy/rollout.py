"""`Model Version Approved` -> for every function serving the model: a new Lambda version with
the new model pin, shifted onto the `live` alias by a CodeDeploy deployment.

Per target function:

1. the alias's version already pins the approved model version: nothing to do (`live`);
2. a deployment this approval started is still running: nothing to do (`in_progress`), so a
   redelivered approval never starts a second deployment;
3. `$LATEST` gets the pin (every other variable kept; guarded by its `RevisionId`), Lambda's
   `function_updated` waiter waits for `LastUpdateStatus: Successful`, and the version is
   published guarded by `CodeSha256` and `RevisionId` (an unchanged function publishes no new
   version: Lambda returns the last one, so a retry after a failed step is safe);
4. CodeDeploy shifts the alias from the version it serves to the new one (`started`). The
   deployment's description carries the approval (`DeploymentTag`), which is how the finish
   step, on CodeDeploy's state-change event, knows what it deployed.

Modes: `canary` uses the deployment group's configuration (per model in cdk.json; default
`CodeDeployDefault.LambdaCanary10Percent5Minutes`), `direct` shifts all at once
(`CodeDeployDefault.LambdaAllAtOnce`), still through CodeDeploy so that the finish step, the
registry and the event are the same. `shadow` needs two versions answering one request, which a
Lambda alias cannot do: it is refused here (the local runtime runs shadows).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aibackend.contracts.base import Parsed
from aibackend.contracts.registry import ModelVersionApprovedV1
from aibackend.deploy.targets import ALL_AT_ONCE, Target, Targets
from aibackend.ports import Canary, ModelRegistry
from aibackend.settings import model_version_env

if TYPE_CHECKING:
    from mypy_boto3_codedeploy import CodeDeployClient
    from mypy_boto3_codedeploy.literals import DeploymentStatusType
    from mypy_boto3_lambda import LambdaClient

#: Deployments that may still shift traffic.
ACTIVE: tuple[DeploymentStatusType, ...] = ("Created", "Queued", "InProgress", "Baking", "Ready")
#: Prefix of the descriptions of deployments the deployer starts.
TAG_PREFIX = "aib-deploy "
#: The waiter polls every 2 s for up to 2 minutes (a configuration update takes seconds).
WAITER_DELAY_S, WAITER_ATTEMPTS = 2, 60


class UnknownModelError(ValueError):
    """No function serves the approved model: nothing can be deployed. Permanent: the event
    goes to the deployer's failure queue with this message."""


class UnsupportedModeError(ValueError):
    """The approval asks for a rollout AWS Lambda aliases cannot do."""


class DeploymentBusyError(RuntimeError):
    """Another approval's deployment is still running on the group; CodeDeploy runs one at a
    time. Transient: the event is retried, and lands in the failure queue if it stays busy."""


class DeploymentTag(BaseModel):
    """What a deployment's description records about the approval that started it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    approval: Annotated[str, Field(min_length=1, max_length=128)]
    correlation_id: Annotated[str, Field(min_length=1, max_length=128)]
    model: str
    version: Annotated[int, Field(ge=1)]
    previous: Annotated[int, Field(ge=1)] | None = None
    function: str
    actor: Annotated[str, Field(max_length=128)]

    def describe(self) -> str:
        return TAG_PREFIX + self.model_dump_json(exclude_none=True)

    @classmethod
    def of(cls, description: str | None) -> DeploymentTag | None:
        """The tag of a deployment the deployer started; None for any other deployment."""
        if not description or not description.startswith(TAG_PREFIX):
            return None
        try:
            return cls.model_validate_json(description.removeprefix(TAG_PREFIX))
        except ValidationError:
            return None


@dataclass(frozen=True)
class TargetOutcome:
    function: str
    status: Literal["started", "in_progress", "live"]
    current_version: str
    target_version: str | None = None
    deployment_id: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "function": self.function,
            "status": self.status,
            "current_version": self.current_version,
            "target_version": self.target_version,
            "deployment_id": self.deployment_id,
        }


def targets_of(model: str, targets: Targets) -> tuple[Target, ...]:
    found = targets.get(model, ())
    if not found:
        raise UnknownModelError(
            f"no function serves model {model!r}, so there is nothing to deploy; models served: "
            f"{', '.join(sorted(m for m, t in targets.items() if t)) or 'none'} (a function "
            "serves a model by listing it in `models` of its function.toml)"
        )
    return found


def deployment_config(approval: ModelVersionApprovedV1, target: Target) -> str:
    if approval.mode == "shadow":
        raise UnsupportedModeError(
            f"{approval.model} v{approval.model_version}: mode 'shadow' is not available on AWS "
            "(a Lambda alias sends each request to one version); approve with mode 'canary' or "
            "'direct'"
        )
    return ALL_AT_ONCE if approval.mode == "direct" else target.deployment_config


def roll_out(
    approval: Parsed[ModelVersionApprovedV1],
    targets: Targets,
    registry: ModelRegistry,
    lambda_: LambdaClient,
    codedeploy: CodeDeployClient,
) -> list[TargetOutcome]:
    """Record the canary in the registry, then deploy the approved version to every function
    serving its model."""
    detail = approval.detail
    found = targets_of(detail.model, targets)
    configs = [deployment_config(detail, t) for t in found]  # refuse before changing anything
    record_canary(registry, detail)
    return [
        roll_out_target(approval, target, config, lambda_, codedeploy)
        for target, config in zip(found, configs, strict=True)
    ]


def record_canary(registry: ModelRegistry, approval: ModelVersionApprovedV1) -> Canary | None:
    """The registry's canary of the approved version: the one already running (started by whoever
    sent the approval, or by an earlier delivery of it), or a new one. None where there is no
    canary to record: mode `direct`, or a model's first version (nothing to compare with; the
    finish step promotes it). A canary of another version refuses (`PromotionRefusedError`)."""
    if approval.mode == "direct" or registry.production(approval.model) is None:
        return None
    running = registry.canary(approval.model)
    if running is not None and running.candidate == approval.model_version:
        return running
    return registry.start_canary(
        approval.model,
        approval.model_version,
        actor=approval.actor,
        reason=approval.reason,
        mode="canary",
        percent=approval.percent,
        window_s=approval.window_minutes * 60.0,
    )


def roll_out_target(
    approval: Parsed[ModelVersionApprovedV1],
    target: Target,
    config: str,
    lambda_: LambdaClient,
    codedeploy: CodeDeployClient,
) -> TargetOutcome:
    detail = approval.detail
    pin, wanted = model_version_env(detail.model), str(detail.model_version)
    current = lambda_.get_alias(FunctionName=target.function_name, Name=target.alias)
    current_version = current["FunctionVersion"]
    served = lambda_.get_function_configuration(
        FunctionName=target.function_name, Qualifier=current_version
    )
    if _variables(served).get(pin) == wanted and not _shifting(current):
        return TargetOutcome(target.function, "live", current_version, current_version)
    running = _running_deployment(codedeploy, target, approval.event_id)
    if running is not None:
        return TargetOutcome(target.function, "in_progress", current_version, None, running)
    new_version = publish_with_pin(lambda_, target, pin, wanted, f"{detail.model} v{wanted}")
    tag = DeploymentTag(
        approval=approval.event_id,
        correlation_id=approval.correlation_id,
        model=detail.model,
        version=detail.model_version,
        previous=detail.previous_version,
        function=target.function,
        actor=detail.actor,
    )
    try:
        deployment_id = start_deployment(
            codedeploy, target, config, current_version, new_version, tag.describe()
        )
    except ClientError as e:
        # A concurrent delivery of the same approval got there first: that one is ours.
        running = (
            _running_deployment(codedeploy, target, approval.event_id)
            if _limit_exceeded(e)
            else None
        )
        if running is None:
            raise
        return TargetOutcome(target.function, "in_progress", current_version, new_version, running)
    return TargetOutcome(target.function, "started", current_version, new_version, deployment_id)


def publish_with_pin(
    lambda_: LambdaClient, target: Target, pin: str, value: str, description: str
) -> str:
    """Set `pin` on `$LATEST`, keeping every other variable, then publish it; the version."""
    latest = lambda_.get_function_configuration(FunctionName=target.function_name)
    variables = _variables(latest)
    if variables.get(pin) != value:
        lambda_.update_function_configuration(
            FunctionName=target.function_name,
            Environment={"Variables": {**variables, pin: value}},
            RevisionId=latest["RevisionId"],
        )
        lambda_.get_waiter("function_updated").wait(
            FunctionName=target.function_name,
            WaiterConfig={"Delay": WAITER_DELAY_S, "MaxAttempts": WAITER_ATTEMPTS},
        )
        latest = lambda_.get_function_configuration(FunctionName=target.function_name)
    published = lambda_.publish_version(
        FunctionName=target.function_name,
        CodeSha256=latest["CodeSha256"],
        RevisionId=latest["RevisionId"],
        Description=description[:256],
    )
    return published["Version"]


def appspec(target: Target, current_version: str, target_version: str) -> str:
    """The AppSpec of a Lambda deployment: shift `target.alias` between two versions."""
    return json.dumps(
        {
            "version": 0.0,
            "Resources": [
                {
                    target.function: {
                        "Type": "AWS::Lambda::Function",
                        "Properties": {
                            "Name": target.function_name,
                            "Alias": target.alias,
                            "CurrentVersion": current_version,
                            "TargetVersion": target_version,
                        },
                    }
                }
            ],
        },
        sort_keys=True,
    )


def start_deployment(
    codedeploy: CodeDeployClient,
    target: Target,
    config: str,
    current_version: str,
    target_version: str,
    description: str,
) -> str:
    content = appspec(target, current_version, target_version)
    response = codedeploy.create_deployment(
        applicationName=target.application,
        deploymentGroupName=target.deployment_group,
        deploymentConfigName=config,
        description=description,
        revision={
            "revisionType": "AppSpecContent",
            "appSpecContent": {
                "content": content,
                "sha256": hashlib.sha256(content.encode()).hexdigest(),
            },
        },
    )
    return response["deploymentId"]


def _variables(configuration: Mapping[str, object]) -> dict[str, str]:
    environment = configuration.get("Environment")
    variables = environment.get("Variables") if isinstance(environment, Mapping) else None
    return dict(variables) if isinstance(variables, Mapping) else {}


def _shifting(alias: Mapping[str, object]) -> bool:
    """Whether part of the alias's traffic goes to another version (a deployment under way)."""
    routing = alias.get("RoutingConfig")
    return isinstance(routing, Mapping) and bool(routing.get("AdditionalVersionWeights"))


def _running_deployment(codedeploy: CodeDeployClient, target: Target, approval: str) -> str | None:
    """The id of this approval's deployment still running on the group, if any; a
    `DeploymentBusyError` when another deployment holds the group."""
    listed = codedeploy.list_deployments(
        applicationName=target.application,
        deploymentGroupName=target.deployment_group,
        includeOnlyStatuses=list(ACTIVE),
    )
    for deployment_id in listed.get("deployments", ()):
        info = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        tag = DeploymentTag.of(info.get("description"))
        if tag is not None and tag.approval == approval:
            return deployment_id
        started_by = (
            f"{tag.model} v{tag.version}, approval event {tag.approval}"
            if tag is not None
            else "not started by the deployer"
        )
        raise DeploymentBusyError(
            f"{target.function}: deployment {deployment_id} ({started_by}) is still running on "
            f"deployment group {target.deployment_group}; CodeDeploy runs one at a time, so "
            "this approval is retried (stop that deployment, or redeliver the approval later)"
        )
    return None


def _limit_exceeded(error: ClientError) -> bool:
    """CodeDeploy's answer when the group already runs a deployment."""
    return error.response.get("Error", {}).get("Code") == "DeploymentLimitExceededException"
