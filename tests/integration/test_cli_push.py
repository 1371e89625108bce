"""`aib models push`: a local version published to the AWS registry (moto)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aibackend.cli import main
from tests.support import create_registry_table


@pytest.fixture(autouse=True)
def _restore_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIB_STATE_DIR", ".aib")


def test_push_publishes_the_production_version_to_aws(
    tmp_path: Path,
    tiny_model_factory: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3
    from moto import mock_aws

    from aibackend.adapters import model_registry
    from aibackend.models.card import sha256_file
    from aibackend.settings import PlatformSettings

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    local = model_registry(PlatformSettings(state_dir=tmp_path))
    local.register(tiny_model_factory(tmp_path / "a", name="tiny"))
    local.set_production("tiny", 1)
    with mock_aws():
        boto3.client("s3").create_bucket(
            Bucket="models-123", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        create_registry_table(boto3.client("dynamodb"), "aib-model-registry")
        # WHEN the local production version is pushed with --promote
        argv = ["--state-dir", str(tmp_path), "models", "push", "tiny", "--bucket", "models-123"]
        assert main([*argv, "--promote"]) == 0
        # THEN AWS holds the same artifact, registered and set as production
        remote = model_registry(PlatformSettings(adapters="aws", model_bucket="models-123"))
        prod = remote.production("tiny")
        assert prod is not None
        assert prod.sha256 == sha256_file(tmp_path / "a" / "model.onnx")
        assert "as v1" in capsys.readouterr().out
