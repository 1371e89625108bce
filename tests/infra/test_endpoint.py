"""AibEndpoints: the SageMaker endpoint of the functions' `endpoints = [...]`, synthesized
without Docker (the image asset is only staged), cfn-lint and cdk-nag clean, and what its
callers get (the endpoint's name, InvokeEndpoint on it alone)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template

from aibackend.errors import ConfigError
from infra.application import ENDPOINTS_STACK, build_app, group_stack_name
from infra.constructs.endpoint import (
    EndpointSettings,
    EndpointsStack,
    dockerignore_patterns,
    endpoint_name,
)

pytestmark = pytest.mark.slow  # synthesizes CDK apps
ROOT = Path(__file__).resolve().parents[2]
CONTEXT = {"aws:cdk:bundling-stacks": [], "model:embeddings:version": "4"}
CALLER = """
description = "Calls the embeddings endpoint."
endpoints = ["embeddings"]
"""


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory, synthesizer: Any) -> Any:
    """An app whose one function calls the embeddings endpoint, version 4 pinned."""
    functions = tmp_path_factory.mktemp("functions")
    caller = functions / "caller"
    caller.mkdir()
    (caller / "__init__.py").write_text("")
    (caller / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    (caller / "function.toml").write_text(CALLER)
    return synthesizer(tmp_path_factory.mktemp("cdk.out"), functions_dir=functions, context=CONTEXT)


@pytest.fixture(scope="module")
def endpoints(synthesized: Any) -> Template:
    return Template.from_json(synthesized.template_json(ENDPOINTS_STACK))


def only(template: Template, type_: str) -> dict[str, Any]:
    (resource,) = template.find_resources(type_).values()
    props: dict[str, Any] = resource["Properties"]
    return props


def test_the_model_serves_the_pinned_version_from_its_tarball_in_isolation(
    endpoints: Template,
) -> None:
    model = only(endpoints, "AWS::SageMaker::Model")
    assert model["EnableNetworkIsolation"] is True
    container = model["PrimaryContainer"]
    assert container["ModelDataUrl"]["Fn::Join"][1][-1] == "/embeddings/4/model.tar.gz"
    assert container["Environment"] == {"AIB_EMBEDDINGS_BACKEND": "onnx"}
    assert "container-assets" in str(container["Image"])  # the Dockerfile's image asset


def test_the_role_reads_exactly_the_tarball_and_pulls_exactly_the_image(
    endpoints: Template,
) -> None:
    (policy,) = endpoints.find_resources("AWS::IAM::Policy").values()
    statements = {
        tuple(s["Action"]) if isinstance(s["Action"], list) else (s["Action"],): s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    }
    s3_read = statements[("s3:GetObject",)]["Resource"]["Fn::Join"][1]
    assert s3_read[-1] == "/embeddings/4/model.tar.gz"  # no wildcard
    pull = statements[
        ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
    ]
    assert "container-assets" in str(pull["Resource"])
    assert ("kms:Decrypt",) in statements


def test_default_hosting_is_two_gpu_instances_with_a_canary_and_rollback_alarms(
    endpoints: Template,
) -> None:
    config = only(endpoints, "AWS::SageMaker::EndpointConfig")
    (variant,) = config["ProductionVariants"]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.g5.xlarge", 2)
    assert variant["VariantName"] == "live"
    endpoint = only(endpoints, "AWS::SageMaker::Endpoint")
    assert endpoint["EndpointName"] == endpoint_name("embeddings") == "aib-embeddings"
    policy = endpoint["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    routing = policy["TrafficRoutingConfiguration"]
    assert routing["Type"] == "CANARY"
    assert routing["CanarySize"] == {"Type": "INSTANCE_COUNT", "Value": 1}
    assert routing["WaitIntervalInSeconds"] == 600
    rollback = endpoint["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    alarms = endpoints.find_resources("AWS::CloudWatch::Alarm")
    assert sorted(a["AlarmName"]["Ref"] for a in rollback) == sorted(alarms)
    metrics = {a["Properties"]["MetricName"]: a["Properties"] for a in alarms.values()}
    assert set(metrics) == {"Invocation5XXErrors", "ModelLatency"}
    assert metrics["ModelLatency"]["ExtendedStatistic"] == "p99"
    assert metrics["ModelLatency"]["Threshold"] == 1_000_000  # microseconds: 1 s
    for alarm in metrics.values():
        assert {"Name": "EndpointName", "Value": "aib-embeddings"} in alarm["Dimensions"]
        assert {"Name": "VariantName", "Value": "live"} in alarm["Dimensions"]


def test_instances_scale_on_invocations_per_instance(endpoints: Template) -> None:
    target = only(endpoints, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["ResourceId"] == "endpoint/aib-embeddings/variant/live"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 4)
    assert "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint" in str(target["RoleARN"])
    endpoints.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": Match.object_like(
                {
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                    },
                    "TargetValue": 1000,
                }
            ),
        },
    )


def test_callers_get_the_endpoint_name_and_may_invoke_only_it(synthesized: Any) -> None:
    services = Template.from_json(synthesized.template_json(group_stack_name("caller")))
    services.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Environment": {
                "Variables": Match.object_like({"AIB_ENDPOINT_EMBEDDINGS": "aib-embeddings"})
            }
        },
    )
    invokes = [
        s
        for p in services.find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if "sagemaker" in str(s["Action"])
    ]
    assert len(invokes) == 1
    assert invokes[0]["Action"] == "sagemaker:InvokeEndpoint"
    assert invokes[0]["Resource"]["Fn::Join"][1][-1] == ":endpoint/aib-embeddings"


def test_cfn_lint_and_cdk_nag_find_nothing(synthesized: Any) -> None:
    assert synthesized.cfn_lint_findings() == []
    nag = synthesized.nag_report()
    assert nag["violations"] == []
    ours = [s for s in nag["suppressedViolations"] if ENDPOINTS_STACK in str(s)]
    assert {s["ruleName"].split("[")[0] for s in ours} == {"AwsSolutions-IAM5"}
    assert all(len(s["reason"]) >= 40 for s in ours)


def test_without_a_model_version_the_stack_is_left_out_and_says_how(
    tmp_path: Path, functions_dir: Path, new_function: Callable[..., Path]
) -> None:
    # GIVEN a caller of the endpoint, and no embeddings version anywhere
    new_function(functions_dir, "caller", CALLER)
    built = build_app(
        ROOT,
        context={"aws:cdk:bundling-stacks": [], "aib:state-dir": str(tmp_path / "empty")},
        functions_dir=functions_dir,
    )
    # THEN AibEndpoints is not built, and the caller's group stack carries a note (not an error)
    assert built.endpoints is None
    stack = built.groups["caller"]
    notes = [str(m.data) for m in stack.node.metadata if m.type == "aws:cdk:info"]
    assert any("make embeddings" in n and "aib endpoints push embeddings" in n for n in notes)
    assert not [m for m in stack.node.metadata if m.type == "aws:cdk:error"]


def test_an_unknown_endpoint_fails_naming_the_declaration(
    functions_dir: Path, new_function: Callable[..., Path]
) -> None:
    toml = new_function(functions_dir, "caller", 'endpoints = ["whisper"]\n')
    with pytest.raises(ConfigError) as err:
        build_app(ROOT, context=CONTEXT, functions_dir=functions_dir)
    assert str(toml) in str(err.value)
    assert "this project runs embeddings" in str(err.value)


def standalone(**context: Any) -> Template:
    """AibEndpoints alone (with a bucket of its own), for the hosting variants."""
    app = cdk.App(context={f"endpoint:embeddings:{k}": v for k, v in context.items()})
    models = cdk.Stack(app, "Models")
    bucket = s3.Bucket(models, "Bucket", encryption_key=kms.Key(models, "Key"))
    stack = EndpointsStack(
        app, "Endpoints", endpoints={"embeddings": 2}, project_root=ROOT, model_bucket=bucket
    )
    return Template.from_stack(stack)


def test_serverless_hosting_has_no_instances_to_scale_or_canary() -> None:
    template = standalone(**{"instance-type": "serverless", "serverless-memory-mb": 4096})
    (variant,) = only(template, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MaxConcurrency": 10, "MemorySizeInMB": 4096}
    assert "InstanceType" not in variant
    policy = only(template, "AWS::SageMaker::Endpoint")["DeploymentConfig"]
    assert policy["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    assert policy["AutoRollbackConfiguration"]["Alarms"]
    template.resource_count_is("AWS::ApplicationAutoScaling::ScalableTarget", 0)


def test_one_instance_shifts_all_at_once_and_torch_builds_its_image() -> None:
    template = standalone(**{"instance-count": "1", "backend": "torch"})
    routing = only(template, "AWS::SageMaker::Endpoint")["DeploymentConfig"][
        "BlueGreenUpdatePolicy"
    ]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "ALL_AT_ONCE"
    model = only(template, "AWS::SageMaker::Model")
    assert model["PrimaryContainer"]["Environment"] == {"AIB_EMBEDDINGS_BACKEND": "torch"}


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"instance-type": "g5.xlarge"}, "endpoint:embeddings:instance-type: 'g5.xlarge' is not"),
        ({"instance-count": "3", "max-instance-count": "2"}, "(2) is below instance-count (3)"),
        ({"backend": "tensorrt"}, "endpoint:embeddings:backend"),
    ],
)
def test_bad_hosting_context_names_the_key(context: dict[str, str], message: str) -> None:
    app = cdk.App(context={f"endpoint:embeddings:{k}": v for k, v in context.items()})
    with pytest.raises(ConfigError) as err:
        EndpointSettings.from_context("embeddings", app.node)
    assert message in str(err.value)


def test_the_image_context_holds_everything_the_server_imports(tmp_path: Path) -> None:
    # GIVEN only the files the image's build context lets through (Dockerfile.dockerignore)
    patterns = dockerignore_patterns(ROOT / "containers" / "embeddings")
    assert patterns[0] == "*", "the context must start from nothing"
    for pattern in patterns[1:]:
        assert pattern.startswith("!") and "*" not in pattern
        rel = pattern[1:]
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, tmp_path / rel)
    # WHEN the server module is imported from them alone (as the Dockerfile checks)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "layers" / "common")}
    out = subprocess.run(
        [sys.executable, "-c", "import aibackend.embeddings.server as s; print(s.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    # THEN it imports, from there
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(tmp_path))
