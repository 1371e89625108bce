"""EventBridge `Model Version Approved` -> CodeDeploy deployments of every function serving the
model; CodeDeploy's final `Deployment State-change Notification` -> registry + `Model
Deployment Finished`. The logic is `aibackend.deploy`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.adapters import event_bus, model_registry
from aibackend.contracts.rejects import rejects_contract_errors
from aibackend.deploy.service import Deployer
from aibackend.deploy.targets import ENV, targets_from_env
from aibackend.masking import masked_logger

logger = masked_logger()
metrics = Metrics()

TARGETS = targets_from_env()
#: Metric per finished deployment's outcome.
OUTCOME_METRICS = {"succeeded": "DeploymentsSucceeded", "rolled_back": "DeploymentsRolledBack"}


def _deployer() -> Deployer | None:
    if TARGETS is None:
        return None
    import boto3

    return Deployer(
        targets=TARGETS,
        registry=model_registry(),
        lambda_=boto3.client("lambda"),
        codedeploy=boto3.client("codedeploy"),
        bus=event_bus(),
    )


DEPLOYER = _deployer()


@logger.inject_lambda_context(correlation_id_path="detail.correlation_id || id")
@metrics.log_metrics
@rejects_contract_errors("model_deployer")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if DEPLOYER is None:
        logger.info(f"{ENV} is not set (not deployed by CDK): the local runtime runs canaries")
        return {"skipped": f"{ENV} is not set"}
    result = DEPLOYER.handle(event)  # raises what must be retried or kept in the failure queue
    logger.info("deployment step done", extra=result)
    if "outcome" in result:
        metrics.add_metric(name=OUTCOME_METRICS[result["outcome"]], unit=MetricUnit.Count, value=1)
    return result
