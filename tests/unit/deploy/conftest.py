"""Stubbed Lambda and CodeDeploy clients (botocore Stubber: every call must be the expected one,
with exactly these parameters), a DynamoDB registry under moto, and the targets of fraud."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from aibackend.adapters.aws import DynamoModelRegistry, S3ObjectStore
from aibackend.contracts import parse
from aibackend.deploy.targets import Target
from aibackend.ports import EventBus, GateCheck, GateVerdict, PutEvent, PutEventsResult
from tests.conftest import build_tiny_model, load_event
from tests.support import create_registry_table

ROOT = Path(__file__).resolve().parents[3]
REGION = "eu-west-1"
PIN = "AIB_MODEL_FRAUD_VERSION"

SCORE = Target(
    function="fraud_score",
    function_name="aib-fraud_score",
    application="aib-fraud",
    deployment_group="fraud_score",
    deployment_config="CodeDeployDefault.LambdaCanary10Percent5Minutes",
)
PIPELINE = Target(
    function="pipeline_score",
    function_name="aib-pipeline_score",
    application="aib-pipeline",
    deployment_group="pipeline_score",
    deployment_config="CodeDeployDefault.LambdaCanary10Percent5Minutes",
)
TARGETS = {"fraud": (SCORE, PIPELINE), "sentiment": ()}


def sample(name: str) -> dict[str, Any]:
    """`events/eventbridge/<name>.json`."""
    return load_event(f"eventbridge/{name}")


def approval_event(**detail: Any) -> dict[str, Any]:
    """The sample `Model Version Approved` (fraud v7 over v6, canary), with `detail` changes."""
    event = sample("model_version_approved")
    event["detail"] = {**event["detail"], **detail}
    return event


def approval(**detail: Any) -> Any:
    return parse(approval_event(**detail))


@dataclass
class Clients:
    lambda_: Any
    codedeploy: Any
    lambda_stub: Stubber
    codedeploy_stub: Stubber
    #: The `appSpecContent` of every create_deployment call, in order.
    appspecs: list[dict[str, Any]] = field(default_factory=list)

    def assert_no_pending_responses(self) -> None:
        self.lambda_stub.assert_no_pending_responses()
        self.codedeploy_stub.assert_no_pending_responses()


@pytest.fixture
def clients() -> Iterator[Clients]:
    """Clients whose every call must have been queued: an unexpected one fails the test."""
    creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    lambda_ = boto3.client("lambda", region_name=REGION, **creds)
    codedeploy = boto3.client("codedeploy", region_name=REGION, **creds)
    with Stubber(lambda_) as ls, Stubber(codedeploy) as cs:
        out = Clients(lambda_, codedeploy, ls, cs)

        def keep(params: dict[str, Any], **_: Any) -> None:
            out.appspecs.append(params["revision"]["appSpecContent"])

        codedeploy.meta.events.register("provide-client-params.codedeploy.CreateDeployment", keep)
        yield out


class RecordingBus(EventBus):
    def __init__(self) -> None:
        self.events: list[PutEvent] = []

    def put_events(self, entries: Any) -> PutEventsResult:
        self.events.extend(entries)
        return PutEventsResult(event_ids=tuple(f"id-{i}" for i, _ in enumerate(entries)))


def _approve(registry: DynamoModelRegistry, version: int) -> None:
    check = GateCheck(name="threshold:roc_auc", passed=True, value=0.95, threshold=0.85)
    verdict = GateVerdict(approved=True, checks=(check,), evaluated_at=datetime.now(UTC))
    registry.record_gate("fraud", version, verdict)


@pytest.fixture(scope="module")
def fraud_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("fraud"), name="fraud")


@pytest.fixture
def registry(fraud_artifact: Path) -> Iterator[DynamoModelRegistry]:
    """GIVEN the AWS registry (moto) with fraud v6 in production and v7 approved, staged."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="models", CreateBucketConfiguration={"LocationConstraint": REGION})
        ddb = boto3.client("dynamodb", region_name=REGION)
        create_registry_table(ddb, "aib-model-registry")
        reg = DynamoModelRegistry("aib-model-registry", S3ObjectStore("models", client=s3), ddb)
        for _ in range(7):
            reg.register(fraud_artifact)
        _approve(reg, 6)
        reg.promote("fraud", 6, actor="ana", reason="v6")
        _approve(reg, 7)
        reg.set_stage("fraud", 7, "staging", actor="gate", reason="approved")
        yield reg


# --- canned Lambda and CodeDeploy answers --------------------------------------------------


def alias(version: str, *, canary_to: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "AliasArn": "arn:aws:lambda:eu-west-1:123456789012:function:f:live",
        "Name": "live",
        "FunctionVersion": version,
        "RevisionId": "alias-rev",
    }
    if canary_to is not None:
        out["RoutingConfig"] = {"AdditionalVersionWeights": {canary_to: 0.1}}
    return out


def configuration(
    pin: str | None, *, revision: str = "rev-1", sha: str = "c0de", status: str = "Successful"
) -> dict[str, Any]:
    variables = {"AIB_ADAPTERS": "aws", "FRAUD_THRESHOLD": "0.5", "POWERTOOLS_SERVICE_NAME": "f"}
    if pin is not None:
        variables[PIN] = pin
    return {
        "FunctionName": "f",
        "Environment": {"Variables": variables},
        "RevisionId": revision,
        "CodeSha256": sha,
        "LastUpdateStatus": status,
    }


def deployment_info(
    description: str | None,
    *,
    status: str = "Succeeded",
    error: str | None = None,
    rollback: str | None = None,
) -> dict[str, Any]:
    info: dict[str, Any] = {"deploymentId": "d-ABC", "status": status}
    if description is not None:
        info["description"] = description
    if error is not None:
        info["errorInformation"] = {"code": "ALARM_ACTIVE", "message": error}
    if rollback is not None:
        info["rollbackInfo"] = {"rollbackMessage": rollback}
    return {"deploymentInfo": info}
