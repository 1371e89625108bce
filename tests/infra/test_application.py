"""Building the app: declaration mistakes fail early and say where; missing pins block deploys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from aibackend.errors import ConfigError
from infra.application import build_app
from infra.bundling import CopyPackageLayer, Platform, pip_install_args
from infra.config import InfraConfig
from infra.constructs.layers import COMMON_EXCLUDES

ROOT = Path(__file__).resolve().parents[2]
NO_BUNDLING = {"aws:cdk:bundling-stacks": []}

WithModel = """
memory_mb = 256
models = ["fraud"]
[resources.buckets]
{bucket} = "read"
"""


def test_unknown_resource_name_fails_naming_the_declaration_and_entry(
    functions_dir: Path, new_function: Callable[..., Path]
) -> None:
    # GIVEN a declaration that writes to a bus nobody defines (buckets and tables, unlike
    # buses, are created for whoever names them: see test_event_plumbing, test_data_tables)
    toml = new_function(
        functions_dir,
        "scorer",
        WithModel.format(bucket="models") + '[resources.buses]\nops = "write"\n',
    )
    # WHEN the app is built
    with pytest.raises(ConfigError) as err:
        build_app(
            ROOT,
            context={**NO_BUNDLING, "model:fraud:version": "1"},
            functions_dir=functions_dir,
        )
    # THEN the error names the file, the entry and what is known
    msg = str(err.value)
    assert str(toml) in msg
    assert "resources.buses" in msg
    assert "'ops'" in msg
    assert "known buses: aib, default" in msg


def test_known_resource_name_builds(functions_dir: Path, new_function: Callable[..., Path]) -> None:
    new_function(functions_dir, "scorer", WithModel.format(bucket="models"))
    built = build_app(
        ROOT, context={**NO_BUNDLING, "model:fraud:version": "1"}, functions_dir=functions_dir
    )
    assert set(built.functions) == {"scorer"}
    assert set(built.groups["scorer"].functions) == {"scorer"}


def test_unresolved_version_blocks_only_the_groups_serving_that_model(
    functions_dir: Path, new_function: Callable[..., Path], tmp_path: Path
) -> None:
    # GIVEN a function whose model has no version anywhere, and one in another group whose
    # model's version is pinned
    new_function(functions_dir, "scorer", WithModel.format(bucket="models"))
    new_function(functions_dir, "ranker", 'models = ["ranking"]\n')
    # WHEN the app is built
    built = build_app(
        ROOT,
        context={
            **NO_BUNDLING,
            "aib:state-dir": str(tmp_path / "empty"),
            "model:ranking:version": "4",
        },
        functions_dir=functions_dir,
    )
    # THEN the scorer's group stack carries the error (the CLI refuses to deploy it); the
    # ranker's group, AibModels and the API deploy
    assert set(built.unresolved) == {"fraud"}
    assert "aib train fraud" in built.unresolved["fraud"]

    def errors(stack: cdk.Stack) -> list[Any]:
        return [m.data for m in stack.node.metadata if m.type == "aws:cdk:error"]

    assert errors(built.groups["scorer"]) == [built.unresolved["fraud"]]
    assert errors(built.groups["ranker"]) == []
    assert errors(built.models) == errors(built.shared) == errors(built.api) == []


def test_bad_context_value_names_the_key() -> None:
    app = cdk.App(context={"aib:log-retention-days": "0", "aib:registry": "gcp"})
    with pytest.raises(ConfigError) as err:
        InfraConfig.from_node(app.node)
    assert "aib:log-retention-days" in str(err.value)
    assert "aib:registry" in str(err.value)


def test_string_context_values_are_coerced() -> None:
    app = cdk.App(context={"aib:apigw-account-role": "false", "aib:waf-rate-limit": "500"})
    config = InfraConfig.from_node(app.node)
    assert config.apigw_account_role is False
    assert config.waf_rate_limit == 500


def test_common_layer_ships_the_package_without_training(tmp_path: Path) -> None:
    # GIVEN the real aibackend package
    package = ROOT / "layers" / "common" / "aibackend"
    # WHEN the common layer is bundled locally
    layer = CopyPackageLayer(package, COMMON_EXCLUDES)
    assert layer.try_bundle(str(tmp_path), image=cdk.DockerImage.from_registry("unused"))
    # THEN it sits under python/ (Lambda's layer path) and training code is left out
    shipped = tmp_path / "python" / "aibackend"
    assert (shipped / "catalog.py").is_file()
    assert not (shipped / "training").exists()
    assert not list(shipped.rglob("__pycache__"))


def test_pip_fetches_binary_wheels_for_lambda_not_this_machine() -> None:
    args = pip_install_args("req.txt", "/out/python", Platform("python3.12", "arm64"))
    assert args[args.index("--python-version") + 1] == "3.12"
    platforms = [args[i + 1] for i, a in enumerate(args) if a == "--platform"]
    # onnxruntime's aarch64 wheels are manylinux_2_28 only, pydantic-core's manylinux_2_17
    assert platforms[:2] == ["manylinux_2_28_aarch64", "manylinux_2_17_aarch64"]
    assert "--only-binary=:all:" in args
    assert args[-4:] == ["--target", "/out/python", "-r", "req.txt"]


EVERY_GRANT = """
models = ["fraud"]
[[routes]]
method = "GET"
path = "/v1/things/{thing_id}"
access = "api_key"
[resources.buckets]
models = "readwrite"
[resources.tables]
registry = "readwrite"
"""

AUTHORIZER = """
authorizer = true
[resources.tables]
"api-keys" = "read"
"""


@pytest.mark.slow
def test_every_grant_kind_and_path_parameters_pass_cdk_nag(
    functions_dir: Path, new_function: Callable[..., Path], tmp_path: Path
) -> None:
    # GIVEN a declaration using read/write grants and a {param} path behind the authorizer
    new_function(functions_dir, "things", EVERY_GRANT)
    new_function(functions_dir, "gate", AUTHORIZER)
    built = build_app(
        ROOT,
        context={**NO_BUNDLING, "model:fraud:version": "2"},
        functions_dir=functions_dir,
        outdir=str(tmp_path / "out"),
    )
    # WHEN synthesized (cdk-nag raises on any unacknowledged finding)
    assembly = built.app.synth()
    # THEN the route's path parameter is required and the route needs a key, checked by the
    # authorizer (no token route: no user pool)
    template = assembly.get_stack_by_name("AibApi").template
    (method,) = [
        r for r in template["Resources"].values() if r["Type"] == "AWS::ApiGateway::Method"
    ]
    assert method["Properties"]["RequestParameters"] == {"method.request.path.thing_id": True}
    assert method["Properties"]["ApiKeyRequired"] is True
    assert method["Properties"]["AuthorizationType"] == "CUSTOM"
    assert not [r for r in template["Resources"].values() if r["Type"].startswith("AWS::Cognito")]


def test_declaration_cannot_override_platform_variables(
    functions_dir: Path, new_function: Callable[..., Path]
) -> None:
    # GIVEN a declaration that tries to pin its own model version
    toml = new_function(
        functions_dir,
        "scorer",
        'models = ["fraud"]\n[environment]\nAIB_MODEL_FRAUD_VERSION = "9"\n',
    )
    with pytest.raises(ConfigError) as err:
        build_app(
            ROOT, context={**NO_BUNDLING, "model:fraud:version": "1"}, functions_dir=functions_dir
        )
    assert str(toml) in str(err.value)
    assert "AIB_MODEL_FRAUD_VERSION" in str(err.value)
