"""Names derived from declarations: construct ids and export names must stay stable."""

from __future__ import annotations

from aibackend.catalog import API_GROUP


def pascal(name: str) -> str:
    """`raw-events` / `fraud_score` -> `RawEvents` / `FraudScore`."""
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))


#: Every function's physical name starts here; the rest is its declared name.
FUNCTION_PREFIX = "aib-"
#: The alias every trigger and the REST API invoke.
LIVE_ALIAS = "live"


def function_name(name: str) -> str:
    """`fraud_score` -> `aib-fraud_score`: fixed, so that AibApi reaches a function of another
    stack by an ARN it builds itself, with no export that would tie the two stacks' deploys."""
    return f"{FUNCTION_PREFIX}{name}"


def deploy_application_name(group: str) -> str:
    """The CodeDeploy application of a deploy group's model-serving functions (`aib-fraud`);
    its deployment groups are named after the functions. Fixed, so the deployer (in another
    group) reaches them by name."""
    return f"{FUNCTION_PREFIX}{group}"


def quality_alarm_name(model: str) -> str:
    """The model-quality alarm of `model` (`aib-fraud-quality`): created with the model's
    dashboard in the group of its serving function, watched by name by the deployment groups of
    every function that serves the model, whichever group they deploy with."""
    return f"{FUNCTION_PREFIX}{model}-quality"


#: Deploy order: AibModels, AibData and AibShared (stateful or shared, independent of each
#: other), then the group stacks `AibSvc-<group>` (independent of each other), then AibApi.
MODELS_STACK = "AibModels"
DATA_STACK = "AibData"
SHARED_STACK = "AibShared"
SHARED_STACKS = (MODELS_STACK, DATA_STACK, SHARED_STACK)
#: The REST API, its authorizer (deploy group `api`), token issuer, usage plans and WAF.
API_STACK = "AibApi"
#: Training pipelines (Step Functions + SageMaker training jobs) and the retraining trigger,
#: after AibModels and AibData; no service stack depends on it.
TRAINING_STACK = "AibTraining"
#: Functions deployed in AibTraining instead of a deploy group: training never shares
#: infrastructure with inference.
TRAINING_FUNCTIONS = ("retrain_trigger",)
#: SageMaker endpoints; deployed on their own (minutes, GPU quota), in any order after AibModels.
ENDPOINTS_STACK = "AibEndpoints"
GROUP_STACK_PREFIX = "AibSvc-"


def group_stack_name(group: str) -> str:
    """The stack of deploy group `group` (`fraud` -> `AibSvc-fraud`); `api` -> AibApi."""
    return API_STACK if group == API_GROUP else f"{GROUP_STACK_PREFIX}{group}"
