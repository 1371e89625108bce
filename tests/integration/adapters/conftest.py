"""Adapter pairs for the contract tests: every case runs against `local` and `aws` (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from aibackend.adapters.aws import DynamoModelRegistry, S3ObjectStore
from aibackend.adapters.local import LocalObjectStore, SqliteModelRegistry
from aibackend.ports import ModelRegistry, ObjectStore
from tests.support import create_registry_table

BUCKET = "models"
TABLE = "aib-model-registry"


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def _s3_store() -> S3ObjectStore:
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return S3ObjectStore(BUCKET, client=s3)


@pytest.fixture(params=["local", "aws"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalObjectStore(tmp_path / "bucket", bucket=BUCKET)
        return
    with mock_aws():
        yield _s3_store()


@pytest.fixture(params=["local", "aws"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModelRegistry]:
    if request.param == "local":
        yield SqliteModelRegistry(
            tmp_path / "registry.db", LocalObjectStore(tmp_path / "bucket", bucket=BUCKET)
        )
        return
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="eu-west-1")
        create_registry_table(ddb, TABLE)
        yield DynamoModelRegistry(TABLE, _s3_store(), client=ddb)
