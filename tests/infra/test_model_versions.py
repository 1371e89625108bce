"""Which model version a deploy pins: context first, then the AWS or local registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aibackend.errors import ConfigError
from infra.config import InfraConfig
from infra.model_versions import resolve_model_version, resolve_model_versions
from tests.support import create_registry_table

LOCAL = InfraConfig()
AWS = InfraConfig(registry="aws", registry_table="aib-test-registry")


def test_context_override_wins_over_every_registry(tmp_path: Path) -> None:
    # GIVEN -c model:fraud:version=3 and a config that would otherwise ask AWS
    context = {"model:fraud:version": "3"}
    # WHEN the version is resolved
    r = resolve_model_version("fraud", context.get, AWS, tmp_path)
    # THEN the context wins, without touching AWS
    assert (r.version, r.source) == (3, "context model:fraud:version")


def test_context_value_from_cdk_json_may_be_an_int(tmp_path: Path) -> None:
    assert (
        resolve_model_version("fraud", {"model:fraud:version": 7}.get, LOCAL, tmp_path).version == 7
    )


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "1.5"])
def test_context_value_must_be_a_positive_integer(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match=r"model:fraud:version=3"):
        resolve_model_version("fraud", {"model:fraud:version": bad}.get, LOCAL, tmp_path)


def test_missing_version_says_how_to_get_one(tmp_path: Path) -> None:
    # GIVEN no context and an empty local state folder
    with pytest.raises(ConfigError) as err:
        resolve_model_version("fraud", {}.get, LOCAL, tmp_path)
    # THEN the message names both fixes
    assert "aib train fraud" in str(err.value)
    assert "-c model:fraud:version=N" in str(err.value)


def test_every_unresolved_model_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_model_versions(["fraud", "sentiment"], {}.get, LOCAL, tmp_path)
    assert "'fraud'" in str(err.value)
    assert "'sentiment'" in str(err.value)


def test_local_registry_production_pointer(
    tmp_path: Path, tiny_model_factory: Callable[..., Path]
) -> None:
    pytest.importorskip("onnx")
    from aibackend.adapters import model_registry
    from aibackend.settings import PlatformSettings

    # GIVEN two registered fraud versions locally, the first promoted
    registry = model_registry(PlatformSettings(state_dir=tmp_path / ".aib"))
    v1 = registry.register(tiny_model_factory(tmp_path / "a", name="fraud"))
    registry.register(tiny_model_factory(tmp_path / "b", name="fraud"))
    registry.set_production("fraud", v1.version)
    # WHEN resolved with the default state dir (.aib under the project root)
    r = resolve_model_version("fraud", {}.get, LOCAL, tmp_path)
    # THEN the production version is pinned, not the latest
    assert r.version == v1.version == 1
    assert r.source.startswith("local registry")


@pytest.fixture
def aws_registry(monkeypatch: pytest.MonkeyPatch) -> Any:
    moto = pytest.importorskip("moto")
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    with moto.mock_aws():
        ddb = boto3.client("dynamodb", region_name="eu-west-1")
        create_registry_table(ddb, AWS.registry_table)
        yield ddb


def test_aws_registry_pointer(aws_registry: Any, tmp_path: Path) -> None:
    aws_registry.put_item(
        TableName=AWS.registry_table,
        Item={"pk": {"S": "fraud"}, "sk": {"S": "POINTER"}, "production": {"N": "4"}},
    )
    r = resolve_model_version("fraud", {}.get, AWS, tmp_path)
    assert (r.version, r.source) == (4, "AWS registry table aib-test-registry")


def test_aws_registry_without_pointer_fails_helpfully(aws_registry: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no production version in the AWS registry table"):
        resolve_model_version("fraud", {}.get, AWS, tmp_path)


def test_aws_registry_unreachable_fails_helpfully(aws_registry: Any, tmp_path: Path) -> None:
    config = InfraConfig(registry="aws", registry_table="no-such-table")
    with pytest.raises(ConfigError, match=r"cannot read the production pointer"):
        resolve_model_version("fraud", {}.get, config, tmp_path)
