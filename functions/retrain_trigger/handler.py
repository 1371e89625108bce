"""EventBridge `Model Drift Detected` / `Model Performance Degraded`, or the weekly schedule ->
start the model's training pipeline unless its cooldown holds (`aibackend.retraining`)."""

from __future__ import annotations

import time
from functools import cache
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.contracts import parse
from aibackend.contracts.rejects import rejects_contract_errors
from aibackend.masking import masked_logger
from aibackend.retraining import (
    FINDINGS,
    RetrainConfig,
    config_from_env,
    load_retrain_config,
    pipeline_starter,
    retrain,
    retrain_state,
    triggers_of,
)
from aibackend.settings import platform_settings

logger = masked_logger()
metrics = Metrics()


@cache
def _config() -> RetrainConfig:
    """On AWS, CDK writes the policies into RETRAIN_CONFIG; under aib dev they are read from
    functions/training.toml for the models `aib train` knows. Read on the first event, not at
    INIT: the Lambda bundle has no `aibackend.training` (nor its numpy), aib dev has both."""
    from_env = config_from_env()
    if from_env is not None:
        return from_env
    from aibackend.catalog import default_functions_dir
    from aibackend.training.local import TRAINABLE  # aib dev only: never imported on AWS

    return load_retrain_config(default_functions_dir(), TRAINABLE)


SETTINGS = platform_settings()
STATE = retrain_state(SETTINGS)
STARTER = pipeline_starter(SETTINGS)

#: Metric per outcome.
METRICS = {
    "started": "RetrainingStarted",
    "suppressed": "RetrainingSuppressed",
    "duplicate": "RetrainingDuplicate",
    "ignored": "RetrainingIgnored",
    "failed": "RetrainingStartFailed",
}


@logger.inject_lambda_context(correlation_id_path="detail.correlation_id || id")
@metrics.log_metrics
@rejects_contract_errors("retrain_trigger")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("detail-type") in FINDINGS:
        parse(event)  # a ContractError ends in the failure queue with its reason
    config = _config()
    decisions = [
        retrain(trigger, config, STATE, STARTER, time.time())
        for trigger in triggers_of(event, config)
    ]
    for d in decisions:
        metrics.add_metric(name=METRICS[d.outcome], unit=MetricUnit.Count, value=1)
        log = logger.warning if d.outcome == "failed" else logger.info
        log(f"retraining {d.outcome}", extra=d.as_dict())
    if any(d.outcome == "failed" for d in decisions):
        # Raise so that the asynchronous invocation is retried (its claim was released).
        failed = "; ".join(d.reason for d in decisions if d.outcome == "failed")
        raise RuntimeError(failed)
    return {"decisions": [d.as_dict() for d in decisions]}
