"""The one factory for every Lambda function, fed by its `function.toml`.

A function owns what only it uses: its role, log group, `live` alias, the rules and event
source mappings of its triggers, and its failure queue. Shared things (buckets, tables,
queues, buses) are passed in by logical name and granted here, one grant per declaration entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from aibackend.capture import BUCKET as CAPTURE_BUCKET
from aibackend.capture import ENV as CAPTURE_ENV
from aibackend.capture import CaptureSettings, capture_env
from aibackend.catalog import DECLARATION, AsyncDelivery, FunctionSpec, Grant, failure_queue
from aibackend.errors import ConfigError
from aibackend.monitoring.config import ENV as MONITOR_ENV
from aibackend.monitoring.config import monitor_env, monitored_models
from aibackend.secrets import secret_env
from aibackend.settings import model_version_env, resource_env
from infra.bundling import Platform
from infra.constructs.endpoint import endpoint_environment, invoke_grant
from infra.constructs.layers import Layers, architecture, runtime
from infra.constructs.queues import DEAD_LETTER_RETENTION, secure_queue
from infra.nag import acknowledge, resource_finding
from infra.naming import LIVE_ALIAS, function_name
from infra.triggers import (
    MODEL_BUCKET,
    REGISTRY_TABLE,
    async_delivery,
    event_pattern,
    s3_notification_input,
)

R = TypeVar("R")
G = TypeVar("G")

#: Platform variables (adapters, model store, model pins) a declaration may not override.
RESERVED_ENV_PREFIX = "AIB_"

#: EventBridge retries a failed delivery to Lambda's Invoke API (throttling, a missing
#: permission while a deploy is under way) this often at most; the event's age (the trigger's
#: max_event_age_s) bounds it first, and an event that runs out of both lands in the DLQ.
DELIVERY_RETRY_ATTEMPTS = 185

#: Item actions a data table grant allows: no streams and no table-level actions, not even
#: DescribeTable. `read` includes condition checks in transactions; `readwrite` covers what
#: Powertools idempotency calls (GetItem, PutItem, UpdateItem, DeleteItem). IAM authorizes
#: TransactGetItems and TransactWriteItems through the item actions they carry.
TABLE_READ_ACTIONS = (
    "dynamodb:BatchGetItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
)
TABLE_WRITE_ACTIONS = (
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
)

#: KMS actions on the key of a store a function uses, per kind of access. The stores are
#: encrypted server-side (SSE-KMS), so the role never sees a key: S3, DynamoDB and SQS call
#: KMS on its behalf and check that it may. Reading an S3 object or an SQS message decrypts
#: its data key; writing one generates a data key (and a multipart upload decrypts it again to
#: finish); DynamoDB decrypts the table's own key with the caller's permission for reads and
#: writes alike (kms:DescribeKey as in CDK's table read grant).
OBJECT_READ_KEY_ACTIONS = ("kms:Decrypt",)
OBJECT_WRITE_KEY_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")
TABLE_KEY_ACTIONS = ("kms:Decrypt", "kms:DescribeKey")
QUEUE_SEND_KEY_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")
TOPIC_PUBLISH_KEY_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")

#: Never shipped in a function's code asset.
CODE_EXCLUDES = ("**/__pycache__", "**/*.pyc", "**/tests", "**/.pytest_cache")


@dataclass(frozen=True)
class SharedResources:
    """What a declaration's `resources` may name, plus the model store every model needs."""

    model_bucket: s3.IBucket
    registry_table: dynamodb.ITable
    #: The services key (AibShared's) of every queue, the failure queues of functions included.
    queue_key: kms.IKey
    #: Logical name (as written in function.toml) -> resource.
    buckets: Mapping[str, s3.IBucket] = field(default_factory=dict)
    tables: Mapping[str, dynamodb.ITable] = field(default_factory=dict)
    #: Physical names of the data tables in `tables` (the registry's is AIB_REGISTRY_TABLE).
    table_names: Mapping[str, str] = field(default_factory=dict)
    #: Only queues some function consumes exist (`[[queues]]`); senders name them here.
    queues: Mapping[str, sqs.IQueue] = field(default_factory=dict)
    #: `aib` (the platform bus) and `default` (where AWS services publish).
    buses: Mapping[str, events.IEventBus] = field(default_factory=dict)
    #: SNS topics by logical name, encrypted with `queue_key`.
    topics: Mapping[str, sns.ITopic] = field(default_factory=dict)


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
    or code is a new version; every trigger targets it), `role`, `log_group`, `rules`
    (events.Rule per `[[events]]`, `[[objects]]` and `[[schedules]]` entry, in that order),
    `failures` (sqs.Queue that keeps what asynchronous invocation could not process, or None
    when nothing invokes the function asynchronously).
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
        capture: Mapping[str, CaptureSettings] | None = None,
    ) -> None:
        """`capture`: inference capture by model (`functions/monitoring.toml`)."""
        super().__init__(scope, construct_id)
        self.spec = spec
        # Why CDK grants on this role carry kms:GenerateDataKey* and kms:ReEncrypt*: one
        # acknowledgement per finding and role, so every reason goes into it.
        self._key_wildcards: list[str] = []
        declaration = spec.directory / DECLARATION
        # Fail before anything is built: a typo in a declaration must not half-build a stack.
        buckets = _lookup(declaration, "buckets", spec.resources.buckets, resources.buckets)
        tables = _lookup(declaration, "tables", spec.resources.tables, resources.tables)
        queues = _lookup(
            declaration,
            "queues",
            spec.resources.queues,
            resources.queues,
            hint="a queue exists once a function consumes it with [[queues]] queue = '<name>'",
        )
        buses = _lookup(declaration, "buses", spec.resources.buses, resources.buses)
        topics = _lookup(declaration, "topics", spec.resources.topics, resources.topics)
        _check_trigger_targets(spec, resources)
        delivery = async_delivery(spec)
        patterns = [
            event_pattern(ev.pattern, f"{declaration}: events[{i}].pattern")
            for i, ev in enumerate(spec.events)
        ]
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
        if spec.models or "ml" in spec.layers:
            fn_layers.append(layers.ml(platform))

        environment = {
            "AIB_ADAPTERS": "aws",
            "AIB_MODEL_BUCKET": resources.model_bucket.bucket_name,
            "AIB_REGISTRY_TABLE": resources.registry_table.table_name,
            **{model_version_env(m): str(model_versions[m]) for m in spec.models},
            "POWERTOOLS_SERVICE_NAME": spec.name,
            "POWERTOOLS_METRICS_NAMESPACE": "aibackend",
            "POWERTOOLS_LOG_LEVEL": settings.log_level,
            **_resource_environment(spec, resources),
            **endpoint_environment(declaration, spec.endpoints),
            **{secret_env(name): parameter for name, parameter in sorted(spec.secrets.items())},
            **_capture_environment(spec, capture or {}),
            **_monitor_environment(spec, capture or {}),
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
            function_name=function_name(spec.name),
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
            reserved_concurrent_executions=spec.reserved_concurrency,
        )
        self.alias = lambda_.Alias(
            self,
            "Live",
            alias_name=LIVE_ALIAS,
            version=self.function.current_version,
            provisioned_concurrent_executions=spec.provisioned_concurrency,
        )

        if spec.models:
            self._grant_model_reads(resources)
        for name, bucket, grant in buckets:
            self._grant_bucket(name, bucket, grant)
        for name, table, grant in tables:
            if name == REGISTRY_TABLE:
                _grant_registry(table, grant, self.role)
                if grant is not Grant.READ:
                    self._key_wildcards.append(
                        f"{spec.directory.name}/{DECLARATION} declares resources.tables.registry "
                        f"= '{grant.value}', granted with CDK's table write grant, which adds "
                        "those key actions on AibModels' key"
                    )
            else:
                _grant_data_table(table, grant, self.role)
        for _, queue, grant in queues:
            _grant_queue(queue, grant, self.role)
        for _, bus, grant in buses:
            # Nothing to grant for `read`: a function receives a bus's events through rules.
            if grant is not Grant.READ:
                bus.grant_put_events_to(self.role)
        for _, topic, _ in topics:
            # Publish only; SNS encrypts with the topic's key on the publisher's behalf.
            self.role.add_to_principal_policy(
                iam.PolicyStatement(actions=["sns:Publish"], resources=[topic.topic_arn])
            )
            _grant_key(resources.queue_key, self.role, TOPIC_PUBLISH_KEY_ACTIONS)
        if spec.secrets:
            self.role.add_to_principal_policy(
                secret_grant(cdk.Stack.of(self), spec.secrets.values())
            )
        if spec.endpoints:
            self.role.add_to_principal_policy(
                invoke_grant(cdk.Stack.of(self), declaration, spec.endpoints)
            )

        for trigger in spec.queues:
            self.alias.add_event_source(
                sources.SqsEventSource(
                    resources.queues[trigger.queue],
                    batch_size=trigger.batch_size,
                    max_batching_window=cdk.Duration.seconds(trigger.batching_window_s)
                    if trigger.batching_window_s
                    else None,
                    # A bad record fails alone; the rest of the batch is deleted.
                    report_batch_item_failures=True,
                    max_concurrency=trigger.max_concurrency,
                )
            )
        self.failures: sqs.Queue | None = None
        self.rules: list[events.Rule] = []
        if delivery is not None:
            self._subscribe(resources, delivery, patterns)

        acknowledge(
            self.role.node.find_child("DefaultPolicy"),
            "IAM5",
            "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions; "
            "CDK adds them for active tracing.",
            finding="Resource::*",
        )
        if self._key_wildcards:
            for action in ("kms:GenerateDataKey*", "kms:ReEncrypt*"):
                acknowledge(
                    self.role.node.find_child("DefaultPolicy"),
                    "IAM5",
                    f"{action} only on the keys named here, from CDK grants that add their "
                    "encrypt-decrypt set of key actions: " + "; ".join(self._key_wildcards) + ".",
                    finding=f"Action::{action}",
                )
        # FunctionSpec allows python3.12/3.13 only; Lambda's newest is python3.14.
        acknowledge(
            self.function,
            "L1",
            f"{spec.name} runs {spec.runtime} as declared in its {DECLARATION}: aibackend "
            "supports Python < 3.14 and datasketches publishes no 3.14 wheels yet; the ml/api "
            "layers are built for the declared runtime.",
        )

    def _subscribe(
        self,
        resources: SharedResources,
        delivery: AsyncDelivery,
        patterns: Sequence[events.EventPattern],
    ) -> None:
        """Rules for `[[events]]`, `[[objects]]` and `[[schedules]]`, all onto `live`, and the
        alias's asynchronous invoke configuration that retries and then keeps failures."""
        spec, where = self.spec, f"{self.spec.directory.name}/{DECLARATION}"
        self.failures = secure_queue(
            self, "Failures", key=resources.queue_key, retention=DEAD_LETTER_RETENTION
        )
        acknowledge(
            self.failures,
            "SQS3",
            f"The failure queue of {spec.name} is the end of the line: it keeps Lambda's "
            "on-failure records and EventBridge's undelivered events for inspection and "
            "replay; a DLQ behind it would only move them once more.",
        )
        # Lambda's own retries and age limit apply to every asynchronous invocation; what is
        # still failing then arrives in the queue wrapped in a record that says why.
        self.alias.configure_async_invoke(
            retry_attempts=delivery.max_attempts,
            max_event_age=cdk.Duration.seconds(delivery.max_event_age_s),
            on_failure=destinations.SqsDestination(self.failures),
        )
        # `rejects_contract_errors` sends an event no contract accepts there itself, on the
        # first attempt, with the send right the destination grants.
        self.function.add_environment(
            resource_env("queue", failure_queue(spec.name)), self.failures.queue_url
        )
        self._key_wildcards.append(
            f"Lambda puts {spec.name}'s on-failure records into its failure queue with this "
            "role, granted by CDK's SqsDestination, which adds those key actions on "
            "AibShared's services key"
        )
        for i, (ev, pattern) in enumerate(zip(spec.events, patterns, strict=True)):
            self._rule(
                f"Event{i}",
                f"{where} events[{i}] on the {ev.bus} bus",
                bus=resources.buses[ev.bus],
                pattern=pattern,
                target_input=(
                    events.RuleTargetInput.from_event_path(ev.input_path) if ev.input_path else None
                ),
                max_event_age_s=delivery.max_event_age_s,
            )
        for i, obj in enumerate(spec.objects):
            bucket = resources.buckets[obj.bucket]
            self._rule(
                f"Objects{i}",
                f"{where} objects[{i}]: {obj.bucket}/{obj.prefix}*{obj.suffix} created",
                # S3 publishes to the account's default bus, never to a custom one.
                bus=resources.buses.get("default"),
                pattern=event_pattern(
                    obj.event_pattern(bucket.bucket_name), f"{where}: objects[{i}]"
                ),
                target_input=(
                    s3_notification_input(spec.name) if obj.notification == "s3" else None
                ),
                max_event_age_s=delivery.max_event_age_s,
            )
            # Reading what the notification names, and only keys the filter can name.
            keys = bucket.arn_for_objects(f"{obj.prefix}*{obj.suffix}")
            self.role.add_to_principal_policy(
                iam.PolicyStatement(actions=["s3:GetObject"], resources=[keys])
            )
            _grant_key(bucket.encryption_key, self.role, OBJECT_READ_KEY_ACTIONS)
            policy = self.role.node.find_child("DefaultPolicy")
            acknowledge(
                policy,
                "IAM5",
                f"{where} objects[{i}] subscribes to objects created under "
                f"{obj.prefix!r}...{obj.suffix!r} of bucket {obj.bucket!r}: it reads the keys "
                "that filter can match, no others.",
                finding=resource_finding(policy, keys),
            )
        for i, sched in enumerate(spec.schedules):
            self._rule(
                f"Schedule{i}",
                f"{where} schedules[{i}]: {sched.expression}",
                schedule=events.Schedule.expression(sched.expression),
                max_event_age_s=delivery.max_event_age_s,
            )

    def _rule(
        self,
        construct_id: str,
        description: str,
        *,
        max_event_age_s: int,
        bus: events.IEventBus | None = None,
        pattern: events.EventPattern | None = None,
        schedule: events.Schedule | None = None,
        target_input: events.RuleTargetInput | None = None,
    ) -> None:
        """One rule onto `live`; the function receives the event, or what `target_input` (an
        input path or an input transformer) makes of it."""
        rule = events.Rule(
            self,
            construct_id,
            description=description[:512],
            event_bus=bus,
            event_pattern=pattern,
            schedule=schedule,
        )
        rule.add_target(
            targets.LambdaFunction(
                self.alias,
                event=target_input,
                retry_attempts=DELIVERY_RETRY_ATTEMPTS,
                max_event_age=cdk.Duration.seconds(max_event_age_s),
                # An event EventBridge cannot hand to Lambda is kept, not dropped.
                dead_letter_queue=self.failures,
            )
        )
        self.rules.append(rule)

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
        # Artifacts and registry items share AibModels' key; serving only ever decrypts.
        _grant_key(resources.model_bucket.encryption_key, self.role, OBJECT_READ_KEY_ACTIONS)
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
        _grant_key(
            bucket.encryption_key,
            self.role,
            OBJECT_READ_KEY_ACTIONS if grant is Grant.READ else OBJECT_WRITE_KEY_ACTIONS,
        )
        policy = self.role.node.find_child("DefaultPolicy")
        acknowledge(
            policy,
            "IAM5",
            f"{self.spec.directory.name}/{DECLARATION} declares resources.buckets.{name} = "
            f"'{grant.value}': object actions on every key of that one bucket.",
            finding=resource_finding(policy, objects),
        )


def secret_grant(stack: cdk.Stack, parameters: Iterable[str]) -> iam.PolicyStatement:
    """`ssm:GetParameter` on exactly the declared parameters (`/aib/x` ->
    `arn:<partition>:ssm:<region>:<account>:parameter/aib/x`): no GetParametersByPath, no
    wildcard. `aibackend.secrets.get_secret` makes that one call, with decryption.

    SecureStrings under the default `aws/ssm` key need no KMS grant (its key policy lets
    every principal of the account use it through SSM); a parameter under a customer-managed
    key needs that key's policy to allow the role kms:Decrypt, which is not granted here.
    """
    arns = [
        stack.format_arn(service="ssm", resource="parameter", resource_name=p.removeprefix("/"))
        for p in sorted(set(parameters))
    ]
    return iam.PolicyStatement(actions=["ssm:GetParameter"], resources=arns)


def _lookup(
    declaration: Path,
    kind: str,
    wanted: Mapping[str, G],
    known: Mapping[str, R],
    *,
    hint: str = "",
) -> list[tuple[str, R, G]]:
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ConfigError(
            f"{declaration}: resources.{kind}: unknown name(s) {', '.join(map(repr, unknown))}; "
            f"known {kind}: {', '.join(sorted(known)) or 'none'}" + (f" ({hint})" if hint else "")
        )
    return [(name, known[name], grant) for name, grant in wanted.items()]


def _check_trigger_targets(spec: FunctionSpec, resources: SharedResources) -> None:
    """Every bus and bucket a trigger names exists, and can publish what it subscribes to."""
    declaration = spec.directory / DECLARATION
    for i, ev in enumerate(spec.events):
        if ev.bus not in resources.buses:
            raise ConfigError(
                f"{declaration}: events[{i}].bus: unknown bus {ev.bus!r}; known buses: "
                f"{', '.join(sorted(resources.buses)) or 'none'}"
            )
    for i, obj in enumerate(spec.objects):
        if obj.bucket == MODEL_BUCKET:
            raise ConfigError(
                f"{declaration}: objects[{i}].bucket: the model store {MODEL_BUCKET!r} sends no "
                "object events (models are promoted through the registry); subscribe to a data "
                "bucket instead"
            )
        if obj.bucket not in resources.buckets:
            raise ConfigError(
                f"{declaration}: objects[{i}].bucket: unknown bucket {obj.bucket!r}; known "
                f"buckets: {', '.join(sorted(resources.buckets)) or 'none'}"
            )


def _capture_environment(
    spec: FunctionSpec, capture: Mapping[str, CaptureSettings]
) -> dict[str, str]:
    """`AIB_CAPTURE` with the settings of the captured models this function serves, if any."""
    mine = {m: s for m, s in capture.items() if spec.capture and m in spec.models and s.rate > 0}
    return {CAPTURE_ENV: capture_env(mine)} if mine else {}


def _monitor_environment(
    spec: FunctionSpec, capture: Mapping[str, CaptureSettings]
) -> dict[str, str]:
    """`AIB_MONITOR` (thresholds of every captured model, `[monitor.*]` of monitoring.toml)
    for the monitoring services: the functions that declare the `monitoring` bucket."""
    if CAPTURE_BUCKET not in spec.resources.buckets:
        return {}
    return {MONITOR_ENV: monitor_env(monitored_models(spec.directory.parent, capture))}


def _resource_environment(spec: FunctionSpec, resources: SharedResources) -> dict[str, str]:
    """`AIB_<KIND>_<NAME>` = physical name (a queue's URL) of every resource the declaration
    names, in resources or triggers: how the `aws` adapters find them by logical name."""
    env: dict[str, str] = {}
    for name in sorted({*spec.resources.buckets, *(o.bucket for o in spec.objects)}):
        env[resource_env("bucket", name)] = resources.buckets[name].bucket_name
    for name in sorted({*spec.resources.queues, *(q.queue for q in spec.queues)}):
        env[resource_env("queue", name)] = resources.queues[name].queue_url
    for name in sorted(spec.resources.buses):
        env[resource_env("bus", name)] = resources.buses[name].event_bus_name
    for name in sorted(spec.resources.topics):
        env[resource_env("topic", name)] = resources.topics[name].topic_arn
    for name in sorted(set(spec.resources.tables) - {REGISTRY_TABLE}):
        env[resource_env("table", name)] = resources.table_names[name]
    return env


def _grant_key(key: kms.IKey | None, role: iam.IRole, actions: Sequence[str]) -> None:
    """`actions` on that one key (nothing for a store without a key of ours)."""
    if key is not None:
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=list(actions), resources=[key.key_arn])
        )


def _grant_queue(queue: sqs.IQueue, grant: Grant, role: iam.IRole) -> None:
    """`read` = consume (receive, delete, change visibility); `write` = send.

    CDK's consume grant adds kms:Decrypt on the queue's key; its send grant would add CDK's
    whole encrypt-decrypt set (kms:ReEncrypt*, kms:GenerateDataKey*), so sending is granted
    here with the two key actions SQS asks for.
    """
    if grant in (Grant.READ, Grant.READ_WRITE):
        queue.grant_consume_messages(role)
    if grant in (Grant.WRITE, Grant.READ_WRITE):
        queue.grant(role, "sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl")
        _grant_key(queue.encryption_master_key, role, QUEUE_SEND_KEY_ACTIONS)


def _grant_data_table(table: dynamodb.ITable, grant: Grant, role: iam.IRole) -> None:
    """Item actions on that one table (data tables have no indexes and no streams), and
    decrypt on its key."""
    actions: list[str] = []
    if grant in (Grant.READ, Grant.READ_WRITE):
        actions += TABLE_READ_ACTIONS
    if grant in (Grant.WRITE, Grant.READ_WRITE):
        actions += TABLE_WRITE_ACTIONS
    role.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=[table.table_arn]))
    _grant_key(table.encryption_key, role, TABLE_KEY_ACTIONS)


def _grant_registry(table: dynamodb.ITable, grant: Grant, role: iam.IRole) -> None:
    """The model registry (beyond the model reads every model gets): CDK's table grants,
    which add the key actions on AibModels' key themselves (for writes, CDK's encrypt-decrypt
    set, kms:GenerateDataKey* and kms:ReEncrypt* included)."""
    if grant is Grant.READ:
        table.grant_read_data(role)
    elif grant is Grant.WRITE:
        table.grant_write_data(role)
    else:
        table.grant_read_write_data(role)
