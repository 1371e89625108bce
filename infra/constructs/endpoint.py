"""A SageMaker real-time endpoint for a SageMaker-contract server, and the stack that holds them.

One `Endpoint` per endpoint some function declares (`endpoints = [...]`):

- the image: the server's Dockerfile as a CDK image asset (`containers/<name>/Dockerfile`,
  project root as context, filtered by `Dockerfile.dockerignore`). Synth only stages that
  context into cdk.out; `cdk deploy` builds and pushes the image (Docker needed there only);
- the model: that image plus `s3://<model bucket>/<model>/<version>/model.tar.gz` (uploaded
  by `aib endpoints push`), network isolation on (the container reaches nothing; SageMaker
  fetches the model data for it), an execution role that may read exactly that object, pull
  exactly that image and write the endpoint's logs;
- the endpoint configuration: one variant, `live`, on the instance type from context
  (`endpoint:<name>:instance-type`, default ml.g5.xlarge, one NVIDIA A10G), or serverless
  (`serverless`: CPU only, memory and concurrency from context);
- the endpoint, under a fixed name (`aib-<name>`: functions find it by name, no cross-stack
  reference), updated blue/green: a canary of 10% of the new fleet (`canary-percent`, whole
  instances, at least one) while the fleet has two or more (all at once otherwise), a baking
  period, and automatic rollback when an alarm fires (any invocation 5xx errors, or p99 model
  latency over its threshold);
- Application Auto Scaling of the variant's instance count, target tracking on
  `SageMakerVariantInvocationsPerInstance` (instance variants only: serverless scales itself).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct, IConstruct
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from aibackend.embeddings.backends import BACKEND_ENV
from aibackend.embeddings.endpoints import EndpointSpec, endpoint_spec
from aibackend.embeddings.package import tarball_key
from aibackend.errors import ConfigError
from aibackend.settings import resource_env
from infra.nag import acknowledge, resource_finding
from infra.naming import pascal

#: The variant every endpoint configuration names (blue/green needs the same name each time).
VARIANT = "live"
SERVERLESS = "serverless"
INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
#: Application Auto Scaling's service-linked role for SageMaker variants.
SCALING_SERVICE = "sagemaker.application-autoscaling.amazonaws.com"
SCALING_ROLE = "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
#: Where SageMaker writes a hosted endpoint's container logs.
LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints"
#: The namespace of SageMaker's instance metrics (CPU, memory, GPU) that the role may write.
METRICS_NAMESPACE = "/aws/sagemaker/Endpoints"


def endpoint_name(name: str) -> str:
    """The SageMaker endpoint's physical name: fixed, so functions and alarms name it."""
    return f"aib-{name.replace('_', '-')}"


def endpoint_arn(stack: cdk.Stack, name: str) -> str:
    return stack.format_arn(
        service="sagemaker", resource="endpoint", resource_name=endpoint_name(name)
    )


def context_key(name: str, setting: str) -> str:
    return f"endpoint:{name}:{setting}"


class EndpointSettings(BaseModel):
    """How one endpoint is hosted: CDK context `endpoint:<name>:<setting>` (dashes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: A SageMaker hosting instance type, or `serverless`. The default GPU type needs the
    #: account's "ml.g5.xlarge for endpoint usage" quota, which is 0 in new accounts.
    instance_type: str = "ml.g5.xlarge"
    #: Two instances: an endpoint in two Availability Zones, and room for a one-instance canary.
    instance_count: Annotated[int, Field(ge=1, le=100)] = 2
    max_instance_count: Annotated[int, Field(ge=1, le=100)] = 4
    #: Target of the scaling policy: invocations per instance per minute (load-test to tune).
    invocations_per_instance: Annotated[int, Field(ge=1)] = 1000
    serverless_memory_mb: Literal[1024, 2048, 3072, 4096, 5120, 6144] = 6144
    serverless_max_concurrency: Annotated[int, Field(ge=1, le=200)] = 10
    backend: Literal["onnx", "torch"] = "onnx"
    #: The rollback alarm's p99 `ModelLatency` threshold.
    latency_p99_ms: Annotated[int, Field(ge=1)] = 1000
    #: Baking period of each traffic-shifting step, watched by the alarms.
    bake_minutes: Annotated[int, Field(ge=0, le=60)] = 10
    #: Share of the new fleet that takes traffic first (whole instances, at least one;
    #: SageMaker allows at most half the fleet).
    canary_percent: Annotated[int, Field(ge=1, le=50)] = 10

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, v: str) -> str:
        if v != SERVERLESS and not INSTANCE_TYPE.match(v):
            raise ValueError(
                f"{v!r} is not a SageMaker hosting instance type (e.g. ml.g5.xlarge, "
                f"ml.c7i.2xlarge) nor {SERVERLESS!r}"
            )
        return v

    @model_validator(mode="after")
    def _counts(self) -> EndpointSettings:
        if self.max_instance_count < self.instance_count:
            raise ValueError(
                f"max-instance-count ({self.max_instance_count}) is below instance-count "
                f"({self.instance_count})"
            )
        return self

    @property
    def serverless(self) -> bool:
        return self.instance_type == SERVERLESS

    @classmethod
    def from_context(cls, name: str, node: Any) -> EndpointSettings:
        keys = {f: context_key(name, f.replace("_", "-")) for f in cls.model_fields}
        raw = {f: v for f, key in keys.items() if (v := node.try_get_context(key)) is not None}
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            lines = [f"invalid CDK context for endpoint {name!r}:"]
            for err in e.errors():
                where = keys.get(str(err["loc"][0]), name) if err["loc"] else name
                lines.append(f"  - {where}: {err['msg'].removeprefix('Value error, ')}")
            raise ConfigError("\n".join(lines)) from e


class Endpoint(Construct):
    """Attributes: `name` (physical endpoint name), `role`, `image` (DockerImageAsset),
    `model`, `config`, `endpoint` (the L1 resources), `alarms` (the rollback alarms),
    `scaling` (ScalableTarget, None for serverless)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: EndpointSpec,
        version: int,
        project_root: Path,
        model_bucket: s3.IBucket,
        settings: EndpointSettings,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.name = endpoint_name(spec.name)
        key = tarball_key(spec.model, version)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"SageMaker endpoint {self.name}: its model data, image and logs",
        )
        model_data = model_bucket.arn_for_objects(key)
        self.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[model_data])
        )
        if model_bucket.encryption_key is not None:
            self.role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["kms:Decrypt"], resources=[model_bucket.encryption_key.key_arn]
                )
            )
        self.image = _image(self, spec, project_root, settings)
        self.image.repository.grant_pull(self.role)
        self._grant_logs_and_metrics(stack)

        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=self.role.role_arn,
            enable_network_isolation=True,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=self.image.image_uri,
                model_data_url=f"s3://{model_bucket.bucket_name}/{key}",
                environment={BACKEND_ENV: settings.backend},
            ),
        )
        # SageMaker checks at CreateModel that the role can reach the image and the data.
        self.model.node.add_dependency(self.role.node.find_child("DefaultPolicy"))

        self.config = sagemaker.CfnEndpointConfig(
            self, "Config", production_variants=[_variant(self.model, settings)]
        )
        self.alarms = self._alarms(settings)
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=self.name,
            endpoint_config_name=self.config.attr_endpoint_config_name,
            deployment_config=_deployment(settings, self.alarms),
        )
        self.scaling = None if settings.serverless else self._autoscale(settings)
        self._acknowledge()

    def _grant_logs_and_metrics(self, stack: cdk.Stack) -> None:
        logs_arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{LOG_GROUP_PREFIX}/{self.name}:*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:DescribeLogStreams",
                    "logs:PutLogEvents",
                ],
                resources=[logs_arn],
            )
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
            )
        )
        self._logs_arn = logs_arn

    def _metric(self, metric: str, statistic: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="AWS/SageMaker",
            metric_name=metric,
            dimensions_map={"EndpointName": self.name, "VariantName": VARIANT},
            statistic=statistic,
            period=cdk.Duration.minutes(1),
        )

    def _alarms(self, settings: EndpointSettings) -> list[cloudwatch.Alarm]:
        """What rolls a deployment back: any 5xx from the container in two minutes running,
        or p99 model latency over the threshold for three."""
        errors = cloudwatch.Alarm(
            self,
            "Errors",
            alarm_description=f"{self.name}: the container answered 5xx (rolls deployments back)",
            metric=self._metric("Invocation5XXErrors", "Sum"),
            threshold=1,
            evaluation_periods=2,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        latency = cloudwatch.Alarm(
            self,
            "Latency",
            alarm_description=(
                f"{self.name}: p99 model latency over {settings.latency_p99_ms} ms (rolls "
                "deployments back)"
            ),
            # ModelLatency is in microseconds.
            metric=self._metric("ModelLatency", "p99"),
            threshold=settings.latency_p99_ms * 1000,
            evaluation_periods=3,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        return [errors, latency]

    def _autoscale(self, settings: EndpointSettings) -> appscaling.ScalableTarget:
        # Application Auto Scaling's service-linked role for SageMaker (created by the service
        # on first use): CDK's default, a new role without permissions, could not scale.
        linked = cdk.Stack.of(self).format_arn(
            service="iam",
            region="",
            resource="role",
            resource_name=f"aws-service-role/{SCALING_SERVICE}/{SCALING_ROLE}",
        )
        target = appscaling.ScalableTarget(
            self,
            "Scaling",
            role=iam.Role.from_role_arn(self, "ScalingRole", linked, mutable=False),
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{self.name}/variant/{VARIANT}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=settings.instance_count,
            max_capacity=settings.max_instance_count,
        )
        target.node.add_dependency(self.endpoint)  # the variant must exist to be registered
        target.scale_to_track_metric(
            "InvocationsPerInstance",
            target_value=settings.invocations_per_instance,
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            scale_in_cooldown=cdk.Duration.minutes(5),
            scale_out_cooldown=cdk.Duration.minutes(1),
        )
        return target

    def _acknowledge(self) -> None:
        """The role's two wildcards (its model data is one exact object ARN)."""
        policy = self.role.node.find_child("DefaultPolicy")
        acknowledge(
            policy,
            "IAM5",
            "ecr:GetAuthorizationToken has no resource-level permissions; CDK's grant_pull adds "
            "it to pull the endpoint's image (the pull actions are on its one repository).",
            finding="Resource::*",
        )
        acknowledge(
            policy,
            "IAM5",
            f"SageMaker writes {self.name}'s container logs to streams it names inside the "
            f"endpoint's own log group {LOG_GROUP_PREFIX}/{self.name}; the streams are "
            "unknown in advance.",
            finding=resource_finding(policy, self._logs_arn),
        )


def _variant(
    model: sagemaker.CfnModel, settings: EndpointSettings
) -> sagemaker.CfnEndpointConfig.ProductionVariantProperty:
    if settings.serverless:
        return sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name=VARIANT,
            model_name=model.attr_model_name,
            serverless_config=sagemaker.CfnEndpointConfig.ServerlessConfigProperty(
                memory_size_in_mb=settings.serverless_memory_mb,
                max_concurrency=settings.serverless_max_concurrency,
            ),
        )
    return sagemaker.CfnEndpointConfig.ProductionVariantProperty(
        variant_name=VARIANT,
        model_name=model.attr_model_name,
        instance_type=settings.instance_type,
        initial_instance_count=settings.instance_count,
        initial_variant_weight=1.0,
        # Image pull, model download and load, first /ping: minutes on a fresh GPU instance.
        container_startup_health_check_timeout_in_seconds=600,
        model_data_download_timeout_in_seconds=600,
    )


def canary_instances(settings: EndpointSettings) -> int:
    """`canary_percent` of the fleet in whole instances: at least one, at most half."""
    share = math.ceil(settings.instance_count * settings.canary_percent / 100)
    return max(1, min(share, settings.instance_count // 2))


def _deployment(
    settings: EndpointSettings, alarms: list[cloudwatch.Alarm]
) -> sagemaker.CfnEndpoint.DeploymentConfigProperty:
    """Blue/green: a canary of `canary_percent` of the new fleet (whole instances, at least
    one) when the fleet has two or more (a canary is at most half the new fleet), all at once
    otherwise; each step bakes under the rollback alarms."""
    bake_s = settings.bake_minutes * 60
    if not settings.serverless and settings.instance_count >= 2:
        size = canary_instances(settings)
        routing = sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
            type="CANARY",
            canary_size=sagemaker.CfnEndpoint.CapacitySizeProperty(
                type="INSTANCE_COUNT", value=size
            ),
            wait_interval_in_seconds=bake_s,
        )
    else:
        routing = sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
            type="ALL_AT_ONCE", wait_interval_in_seconds=bake_s
        )
    return sagemaker.CfnEndpoint.DeploymentConfigProperty(
        blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
            traffic_routing_configuration=routing,
            termination_wait_in_seconds=300,
            maximum_execution_timeout_in_seconds=3 * 3600,
        ),
        auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
            alarms=[sagemaker.CfnEndpoint.AlarmProperty(alarm_name=a.alarm_name) for a in alarms]
        ),
    )


DOCKERIGNORE = "Dockerfile.dockerignore"


def dockerignore_patterns(container: Path) -> list[str]:
    """The build context's patterns (BuildKit reads `<Dockerfile>.dockerignore` itself; CDK
    gets the same list, so its asset hash moves only with files the image contains)."""
    path = container / DOCKERIGNORE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: missing; the image's build context is defined there") from e
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _image(
    scope: Construct, spec: EndpointSpec, project_root: Path, settings: EndpointSettings
) -> ecr_assets.DockerImageAsset:
    container = project_root / spec.container
    if not (container / "Dockerfile").is_file():
        raise ConfigError(
            f"{container}/Dockerfile: missing; endpoint {spec.name!r} is built from it"
        )
    return ecr_assets.DockerImageAsset(
        scope,
        "Image",
        directory=str(project_root),
        file=f"{spec.container}/Dockerfile",
        exclude=dockerignore_patterns(container),
        ignore_mode=cdk.IgnoreMode.DOCKER,
        # SageMaker hosting instances (g5, m5, ...) are x86_64.
        platform=ecr_assets.Platform.LINUX_AMD64,
        build_args={"WITH_TORCH": "1" if settings.backend == "torch" else "0"},
    )


class EndpointsStack(cdk.Stack):
    """`AibEndpoints`: one `Endpoint` per endpoint the catalog's functions declare.

    Apart from the service group stacks because a GPU endpoint deploys in minutes to tens of
    minutes, needs instance quota and rolls back on its own alarms: a Lambda deploy should wait
    for none of that. Functions reach it by its fixed name, so either stack deploys first;
    until the endpoint exists they answer 503.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoints: Mapping[str, int],
        project_root: Path,
        model_bucket: s3.IBucket,
        **kwargs: Any,
    ) -> None:
        """`endpoints`: endpoint name -> the version of its model to serve."""
        super().__init__(scope, construct_id, **kwargs)
        key = model_bucket.encryption_key
        bucket = s3.Bucket.from_bucket_attributes(
            self,
            "ModelBucket",
            bucket_arn=_import(self, model_bucket, model_bucket.bucket_arn, "ModelBucketArn"),
            bucket_name=_import(self, model_bucket, model_bucket.bucket_name, "ModelBucketName"),
            encryption_key=(
                kms.Key.from_key_arn(
                    self, "ModelKey", _import(self, key, key.key_arn, "ModelKeyArn")
                )
                if key is not None
                else None
            ),
        )
        self.endpoints = {
            name: Endpoint(
                self,
                pascal(name),
                spec=endpoint_spec(name),
                version=version,
                project_root=project_root,
                model_bucket=bucket,
                settings=EndpointSettings.from_context(name, self.node),
            )
            for name, version in sorted(endpoints.items())
        }
        for name, ep in self.endpoints.items():
            cdk.CfnOutput(self, f"{pascal(name)}EndpointName", value=ep.endpoint.attr_endpoint_name)


def _import(consumer: cdk.Stack, owner: IConstruct, value: str, name: str) -> str:
    """Another stack's attribute through its named export `<stack>-<name>` (as the group
    stacks import them: stable names survive refactoring)."""
    producer = cdk.Stack.of(owner)
    if producer is consumer:
        return value
    consumer.add_stack_dependency(producer)
    export = f"{producer.stack_name}-{name}"
    if producer.node.try_find_child(f"Export{export}") is not None:  # a group stack made it
        return cdk.Fn.import_value(export)
    return producer.export_value(value, name=export)


def _check(declaration: Path, names: tuple[str, ...]) -> None:
    for name in names:
        try:
            endpoint_spec(name)
        except ConfigError as e:
            raise ConfigError(f"{declaration}: endpoints: {e}") from e


def invoke_grant(
    stack: cdk.Stack, declaration: Path, names: tuple[str, ...]
) -> iam.PolicyStatement:
    """`sagemaker:InvokeEndpoint` on exactly the named endpoints (for a calling function)."""
    _check(declaration, names)
    return iam.PolicyStatement(
        actions=["sagemaker:InvokeEndpoint"],
        resources=[endpoint_arn(stack, n) for n in sorted(names)],
    )


def endpoint_environment(declaration: Path, names: tuple[str, ...]) -> dict[str, str]:
    """`AIB_ENDPOINT_<NAME>` = the SageMaker endpoint's name, as the client reads it (an
    unknown name fails here, before the function is built)."""
    _check(declaration, names)
    return {resource_env("endpoint", n): endpoint_name(n) for n in sorted(names)}
