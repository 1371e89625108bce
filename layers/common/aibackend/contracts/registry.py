"""Contracts of the model registry's deployment events (source `aib.registry`).

`Model Version Approved`: a person (or the gate) approved `model_version` of `model` for
serving; the deployer (`functions/model_deployer`) rolls it out to every function that serves
the model, the way `mode` says. `Model Deployment Finished`: that rollout ended, promoted
(`succeeded`) or rolled back, with the reason; one per approval and function. (The field is
`model_version`, not `version`: a contract's `version` is its schema version.)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from aibackend.contracts.base import Detail, EmittedDetail, register

#: The `source` of every event in this module.
SOURCE = "aib.registry"

ModelName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Version = Annotated[int, Field(ge=1)]
Text = Annotated[str, Field(min_length=1, max_length=512)]
Actor = Annotated[str, Field(min_length=1, max_length=128)]
DeploymentMode = Literal["canary", "shadow", "direct"]


@register
class ModelVersionApprovedV1(Detail):
    """`model_version` of `model` may replace `previous_version` (the production version when it was
    approved; none for a model's first). `mode`: `canary` shifts `percent` of the traffic to
    the new version for `window_minutes`, then all of it unless an alarm fires; `shadow` serves
    the previous version and scores the new one beside it for `window_minutes` (`percent` of
    the requests); `direct` shifts all traffic at once (still watched by the alarms)."""

    detail_type = "Model Version Approved"
    version = "1"

    schema_version: Literal["1"] = "1"
    model: ModelName
    model_version: Version
    previous_version: Annotated[
        Version | None, Field(description="Production version at approval; none: first version")
    ] = None
    mode: DeploymentMode = "canary"
    percent: Annotated[
        int, Field(ge=1, le=99, description="Share of traffic (canary) or requests (shadow)")
    ] = 10
    window_minutes: Annotated[
        int, Field(ge=1, le=2880, description="How long the canary or shadow runs")
    ] = 5
    actor: Actor
    reason: Text

    @model_validator(mode="after")
    def _new_version(self) -> ModelVersionApprovedV1:
        if self.previous_version is not None and self.previous_version == self.model_version:
            raise ValueError(
                f"model_version {self.model_version} is already production (previous_version): "
                "approve a different version"
            )
        return self


@register
class ModelDeploymentFinishedV1(EmittedDetail):
    """The rollout of `model_version` of `model` to `function` ended: `succeeded` (the version is
    production) or `rolled_back` (traffic is back on `previous_version`; `reason` says why: the
    alarm that fired, the failed step). `deployment_id`: the CodeDeploy deployment on AWS, the
    local canary's id locally. `correlation_id` is the approval event's chain."""

    detail_type = "Model Deployment Finished"
    version = "1"

    schema_version: Literal["1"] = "1"
    model: ModelName
    model_version: Version
    previous_version: Version | None = None
    function: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=48)]
    deployment_id: Annotated[str, Field(min_length=1, max_length=128)]
    outcome: Literal["succeeded", "rolled_back"]
    reason: Text
