"""The deployer's two events, on one set of clients: an approval starts deployments
(`rollout`), CodeDeploy's final state change ends one (`finish`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aibackend.contracts import expect, parse
from aibackend.contracts.registry import ModelVersionApprovedV1
from aibackend.deploy.finish import CODEDEPLOY_SOURCE, finish, state_change
from aibackend.deploy.rollout import roll_out
from aibackend.deploy.targets import Targets
from aibackend.ports import EventBus, ModelRegistry

if TYPE_CHECKING:
    from mypy_boto3_codedeploy import CodeDeployClient
    from mypy_boto3_lambda import LambdaClient


@dataclass(frozen=True)
class Deployer:
    targets: Targets
    registry: ModelRegistry
    lambda_: LambdaClient
    codedeploy: CodeDeployClient
    bus: EventBus

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """What was done, for the log and the invocation's result. Raises on anything that
        must be retried or kept in the failure queue (a `ContractError`, an unknown model, a
        refused registry change, an AWS error)."""
        if event.get("source") == CODEDEPLOY_SOURCE:
            return self.finished(event)
        approval = expect(parse(event), ModelVersionApprovedV1)
        outcomes = roll_out(approval, self.targets, self.registry, self.lambda_, self.codedeploy)
        return {
            "model": approval.detail.model,
            "model_version": approval.detail.model_version,
            "targets": [o.as_dict() for o in outcomes],
        }

    def finished(self, event: Mapping[str, Any]) -> dict[str, Any]:
        change = state_change(event)
        out = finish(change, self.targets, self.registry, self.lambda_, self.codedeploy)
        if out is None:
            return {"deployment_id": change.deployment_id, "ignored": "not started by the deployer"}
        result = self.bus.put_events([out])
        if result.failed_count:
            raise RuntimeError(f"event bus refused {out.detail_type}: {result.failures}")
        return {"deployment_id": change.deployment_id, **out.detail}
