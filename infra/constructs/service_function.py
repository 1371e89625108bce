"""The one factory for every Lambda function, fed by its `function.toml`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from aibackend.catalog import DECLARATION, FunctionSpec, Grant
from aibackend.errors import ConfigError
from aibackend.settings import model_version_env
from infra.bundling import Platform
from infra.constructs.layers import Layers, architecture, runtime
from infra.nag import acknowledge, resource_finding

R = TypeVar("R")

#: Platform variables (adapters, model store, model pins) a declaration may not override.
RESERVED_ENV_PREFIX = "AIB_"

#: Never shipped in a function's code asset.
CODE_EXCLUDES = ("**/__pycache__", "**/*.pyc", "**/tests", "**/.pytest_cache")


@dataclass(frozen=True)
class SharedResources:
    """What a declaration's `resources` may name, plus the model store every model needs."""

    model_bucket: s3.IBucket
    registry_table: dynamodb.ITable
    #: Logical name (as written in function.toml) -> resource.
    buckets: Mapping[str, s3.IBucket] = field(default_factory=dict)
    tables: Mapping[str, dynamodb.ITable] = field(default_factory=dict)


@dataclass(frozen=True)
class FunctionSettings:
    log_level: str
    log_retention: logs.RetentionDays


def code_excludes(spec: FunctionSpec) -> list[str]:
    """Asset globs that keep only the function's own folder of `functions/`."""
    return ["*", f"!{spec.package}", f"!{spec.package}/**", *CODE_EXCLUDES]


class ServiceFunction(Construct):
    """A Lambda function built from its declaration.

    Attributes: `spec`, `function`, `alias` (`live`, on `current_version`: a changed model pin
    or code is a new version), `role`, `log_group`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: FunctionSpec,
        functions_dir: Path,
        layers: Layers,
        resources: SharedResources,
        model_versions: Mapping[str, int],
        settings: FunctionSettings,
    ) -> None:
        super().__init__(scope, construct_id)
        self.spec = spec
        declaration = spec.directory / DECLARATION
        # Fail before anything is built: a typo in a declaration must not half-build a stack.
        buckets = _lookup(declaration, "buckets", spec.resources.buckets, resources.buckets)
        tables = _lookup(declaration, "tables", spec.resources.tables, resources.tables)
        reserved = sorted(k for k in spec.environment if k.startswith(RESERVED_ENV_PREFIX))
        if reserved:
            raise ConfigError(
                f"{declaration}: environment: {', '.join(reserved)} are set by the platform "
                f"({RESERVED_ENV_PREFIX}* pins adapters, model store and model versions); "
                "remove them or rename them"
            )
        missing = [m for m in spec.models if m not in model_versions]
        if missing:
            raise ConfigError(f"{declaration}: models: no version resolved for {missing}")

        platform = Platform(spec.runtime, spec.architecture)
        fn_layers = [layers.common, layers.api(platform)]
        if spec.models:
            fn_layers.append(layers.ml(platform))

        environment = {
            "AIB_ADAPTERS": "aws",
            "AIB_MODEL_BUCKET": resources.model_bucket.bucket_name,
            "AIB_REGISTRY_TABLE": resources.registry_table.table_name,
            **{model_version_env(m): str(model_versions[m]) for m in spec.models},
            "POWERTOOLS_SERVICE_NAME": spec.name,
            "POWERTOOLS_METRICS_NAMESPACE": "aibackend",
            "POWERTOOLS_LOG_LEVEL": settings.log_level,
            **spec.environment,
        }

        self.log_group = logs.LogGroup(
            self, "Logs", retention=settings.log_retention, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        # An own role instead of the default one with AWSLambdaBasicExecutionRole: writes go
        # to this function's log group only.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{spec.name} Lambda function",
        )
        self.log_group.grant_write(self.role)

        self.function = lambda_.Function(
            self,
            "Function",
            description=(spec.description or spec.name)[:256],
            runtime=runtime(spec.runtime),
            architecture=architecture(spec.architecture),
            memory_size=spec.memory_mb,
            timeout=cdk.Duration.seconds(spec.timeout_s),
            handler=spec.lambda_handler,
            code=lambda_.Code.from_asset(str(functions_dir), exclude=code_excludes(spec)),
            layers=fn_layers,
            environment=environment,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            role=self.role,
        )
        self.alias = lambda_.Alias(
            self, "Live", alias_name="live", version=self.function.current_version
        )

        if spec.models:
            self._grant_model_reads(resources)
        for name, bucket, grant in buckets:
            self._grant_bucket(name, bucket, grant)
        for _, table, grant in tables:
            _grant_table(table, grant, self.role)

        acknowledge(
            self.role.node.find_child("DefaultPolicy"),
            "IAM5",
            "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions; "
            "CDK adds them for active tracing.",
            finding="Resource::*",
        )
        # FunctionSpec allows python3.12/3.13 only; Lambda's newest is python3.14.
        acknowledge(
            self.function,
            "L1",
            f"{spec.name} runs {spec.runtime} as declared in its {DECLARATION}: aibackend "
            "supports Python < 3.14 and datasketches publishes no 3.14 wheels yet; the ml/api "
            "layers are built for the declared runtime.",
        )

    def _grant_model_reads(self, resources: SharedResources) -> None:
        """Read the declared models' artifacts and registry items, nothing else."""
        prefixes = [resources.model_bucket.arn_for_objects(f"{m}/*") for m in self.spec.models]
        self.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=prefixes)
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:Query"],
                resources=[resources.registry_table.table_arn],
                conditions={
                    "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": list(self.spec.models)}
                },
            )
        )
        policy = self.role.node.find_child("DefaultPolicy")
        for model, arn in zip(self.spec.models, prefixes, strict=True):
            acknowledge(
                policy,
                "IAM5",
                f"Versions of model {model!r} live under {model}/<version>/ and a canary serves "
                "two of them at once: read access covers this model's prefix only.",
                finding=resource_finding(policy, arn),
            )

    def _grant_bucket(self, name: str, bucket: s3.IBucket, grant: Grant) -> None:
        """Object-level actions only: no `s3:*Object*` wildcards, no bucket configuration."""
        objects = bucket.arn_for_objects("*")
        actions: list[str] = []
        if grant in (Grant.READ, Grant.READ_WRITE):
            actions.append("s3:GetObject")
            self.role.add_to_principal_policy(
                iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn])
            )
        if grant in (Grant.WRITE, Grant.READ_WRITE):
            actions += ["s3:PutObject", "s3:AbortMultipartUpload"]
        if grant is Grant.READ_WRITE:
            actions.append("s3:DeleteObject")
        self.role.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=[objects]))
        policy = self.role.node.find_child("DefaultPolicy")
        acknowledge(
            policy,
            "IAM5",
            f"{self.spec.directory.name}/{DECLARATION} declares resources.buckets.{name} = "
            f"'{grant.value}': object actions on every key of that one bucket.",
            finding=resource_finding(policy, objects),
        )


def _lookup(
    declaration: Path, kind: str, wanted: Mapping[str, Grant], known: Mapping[str, R]
) -> list[tuple[str, R, Grant]]:
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ConfigError(
            f"{declaration}: resources.{kind}: unknown name(s) {', '.join(map(repr, unknown))}; "
            f"known {kind}: {', '.join(sorted(known)) or 'none'}"
        )
    return [(name, known[name], grant) for name, grant in wanted.items()]


def _grant_table(table: dynamodb.ITable, grant: Grant, role: iam.IRole) -> None:
    if grant is Grant.READ:
        table.grant_read_data(role)
    elif grant is Grant.WRITE:
        table.grant_write_data(role)
    else:
        table.grant_read_write_data(role)
