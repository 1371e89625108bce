"""The state machine's Lambda steps against S3 and DynamoDB (moto): evaluate the training job's
`model.tar.gz` with the gate, then register it with the verdict."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aibackend.adapters import model_registry
from aibackend.errors import ConfigError
from aibackend.settings import PlatformSettings
from aibackend.training.pipeline_lambda import evaluate, register, split_s3_uri
from tests.conftest import build_tiny_model
from tests.support import create_registry_table

BUCKET = "models"
TABLE = "aib-model-registry"
ARTIFACT = f"s3://{BUCKET}/training/tiny/aib-1234/output/model.tar.gz"
CHANNEL = f"s3://{BUCKET}/training-data/tiny/"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """The model bucket with a training job's output and a channel, the registry table."""
    for name, value in {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AIB_ADAPTERS": "aws",
        "AIB_MODEL_BUCKET": BUCKET,
        "AIB_REGISTRY_TABLE": TABLE,
        "AIB_MODEL_CACHE_DIR": str(tmp_path / "cache"),
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        create_registry_table(boto3.client("dynamodb"), TABLE)
        # SageMaker's model.tar.gz: the model folder's files at the archive's root
        folder = build_tiny_model(tmp_path / "job-model")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for f in sorted(folder.iterdir()):
                tar.add(f, arcname=f.name)
        s3.put_object(Bucket=BUCKET, Key=split_s3_uri(ARTIFACT)[1], Body=buf.getvalue())
        s3.put_object(Bucket=BUCKET, Key="training-data/tiny/part-0.csv", Body=b"x0,x1,y\n1,2,0\n")
        yield s3


def _event(**gate: Any) -> dict[str, Any]:
    return {"model": "tiny", "artifact": ARTIFACT, "channel": CHANNEL, "gate": gate}


def test_an_approved_first_candidate_is_registered_as_production(aws: Any) -> None:
    # GIVEN the training job's output and a gate the card's metrics pass
    evaluation = evaluate(_event(thresholds={"roc_auc": 0.4}))
    # THEN the evaluation approves it, with the checks' evidence for the state machine
    assert (evaluation["approved"], evaluation["failed"]) == (True, [])
    checks = {c["name"]: c["passed"] for c in evaluation["verdict"]["checks"]}
    assert checks["threshold:roc_auc"] is True
    # WHEN register runs with that evaluation
    done = register({"model": "tiny", "artifact": ARTIFACT, "evaluation": evaluation})
    # THEN it is version 1 and, as the model's first, production in the DynamoDB registry
    assert done == {"model": "tiny", "version": 1, "stage": "production", "approval": "approved"}
    registry = model_registry(PlatformSettings.from_env())
    mv = registry.get("tiny", 1)
    assert mv.gate is not None and mv.gate.approved and mv.approval.by == "gate"
    # AND its audit trail names the pipeline as the actor
    assert {e.actor for e in registry.history("tiny", 1) if e.action == "registered"} == {
        "aib-training"
    }


def test_a_rejected_candidate_is_recorded_as_a_rejected_candidate(aws: Any) -> None:
    # GIVEN a gate whose minimum the candidate misses
    evaluation = evaluate(_event(thresholds={"roc_auc": 0.9}))
    assert (evaluation["approved"], evaluation["failed"]) == (False, ["threshold:roc_auc"])
    # WHEN the state machine records the rejection
    done = register({"model": "tiny", "artifact": ARTIFACT, "evaluation": evaluation})
    # THEN the version stays a rejected candidate, nothing is served
    assert (done["stage"], done["approval"]) == ("candidate", "rejected")
    assert model_registry(PlatformSettings.from_env()).production("tiny") is None


def test_a_malformed_artifact_uri_says_what_is_expected() -> None:
    with pytest.raises(ConfigError, match="expected s3://<bucket>/<key>"):
        split_s3_uri("models/tiny/model.tar.gz")
