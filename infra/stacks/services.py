"""`AibSvc-<group>`: one stack per deploy group (`group` in function.toml): the group's Lambda
functions with their layers, triggers, failure queues and alarms.

A group deploys without touching any other: it imports what it shares (model store, bus, data
buckets and tables from AibModels and AibData; queues, topics, the services key and the alarm
topic from AibShared) by named exports and exports nothing (AibApi reaches its functions by
their fixed names).
Rules on the shared buses and S3 object-created rules (EventBridge notifications of the data
buckets) live here, with the functions they invoke.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from aibackend.catalog import DEFAULT_BUS, PLATFORM_BUS, Catalog, FunctionSpec
from infra.config import InfraConfig
from infra.constructs.alarms import FunctionAlarms, watch_failures
from infra.constructs.deployment import ModelDeployments
from infra.constructs.layers import Layers
from infra.constructs.model_monitoring import watch_models
from infra.constructs.service_function import FunctionSettings, ServiceFunction, SharedResources
from infra.exports import import_value
from infra.naming import pascal
from infra.triggers import MODEL_BUCKET, REGISTRY_TABLE


@dataclass(frozen=True)
class Producers:
    """The shared stacks' resources a group may use, as their stacks made them."""

    model_bucket: s3.IBucket
    registry_table: dynamodb.ITable
    bus: events.IEventBus
    data_buckets: Mapping[str, s3.IBucket]
    data_tables: Mapping[str, dynamodb.ITable]
    queue_key: kms.IKey
    queues: Mapping[str, sqs.IQueue]
    topics: Mapping[str, sns.ITopic]
    alarm_topic: sns.ITopic


class ServiceGroupStack(cdk.Stack):
    """Attributes: `group`, `specs` (its functions' declarations), `layers`, `functions` (name
    -> ServiceFunction), `alarms` (name -> FunctionAlarms), `queue_alarms` (`<function>-failures`
    -> the alarm construct of its on-failure queue), `resources` (SharedResources, imported),
    `alarm_topic` (sns.ITopic, imported), `model_monitoring` (model -> ModelMonitoring: the
    dashboard and alarms of each model whose serving function is in the group),
    `deployments` (ModelDeployments: the CodeDeploy group of each model-serving function)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        group: str,
        specs: Sequence[FunctionSpec],
        catalog: Catalog,
        layers_dir: Path,
        producers: Producers,
        model_versions: Mapping[str, int],
        config: InfraConfig,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.group = group
        self.specs = tuple(specs)
        self.resources = self._import_shared(producers)
        self.alarm_topic = sns.Topic.from_topic_arn(
            self,
            "AlarmTopic",
            self._import(producers.alarm_topic, producers.alarm_topic.topic_arn, "AlarmTopicArn"),
        )
        settings = FunctionSettings(
            log_level=config.log_level, log_retention=_retention(config.log_retention_days)
        )
        self.layers = Layers(self, "Layers", layers_dir=layers_dir)
        self.functions = {
            spec.name: ServiceFunction(
                self,
                pascal(spec.name),
                spec=spec,
                functions_dir=catalog.root,
                layers=self.layers,
                resources=self.resources,
                model_versions=model_versions,
                settings=settings,
                capture=catalog.capture,
            )
            for spec in self.specs
        }
        self.alarms = {
            name: FunctionAlarms(fn, "Alarms", spec=fn.spec, alias=fn.alias, topic=self.alarm_topic)
            for name, fn in self.functions.items()
        }
        # The queues this group consumes are AibShared's, and watched there.
        self.queue_alarms = watch_failures(
            self,
            failure_queues={name: fn.failures for name, fn in self.functions.items()},
            topic=self.alarm_topic,
        )
        # The dashboard and alarms of each model whose serving function is in this group.
        self.model_monitoring = watch_models(
            self,
            catalog=catalog,
            functions=self.functions,
            function_alarms=self.alarms,
            config=config,
            topic=self.alarm_topic,
        )
        # Canary deployments of new model versions onto each model-serving function's alias.
        self.deployments = ModelDeployments(
            self,
            "Deployments",
            catalog=catalog,
            group=group,
            functions=self.functions,
            quality_alarms={m: w.quality_alarm for m, w in self.model_monitoring.items()},
            topic=self.alarm_topic,
        )

    def _import_shared(self, p: Producers) -> SharedResources:
        """The shared stacks' resources as references into them (named exports). The stores'
        keys come along, so the grants of function declarations reach the key of each store
        they name, and no other."""
        keys: dict[str, kms.IKey] = {}

        def key_of(store_key: kms.IKey | None, name: str) -> kms.IKey | None:
            if store_key is None:
                return None
            if name not in keys:
                arn = self._import(store_key, store_key.key_arn, f"{name}Arn")
                keys[name] = kms.Key.from_key_arn(self, name, arn)
            return keys[name]

        model_bucket = s3.Bucket.from_bucket_attributes(
            self,
            "ModelBucket",
            bucket_arn=self._import(p.model_bucket, p.model_bucket.bucket_arn, "ModelBucketArn"),
            bucket_name=self._import(p.model_bucket, p.model_bucket.bucket_name, "ModelBucketName"),
            encryption_key=key_of(p.model_bucket.encryption_key, "ModelKey"),
        )
        # Only the name crosses stacks (the table lives in this account and region).
        registry_table = dynamodb.Table.from_table_attributes(
            self,
            "RegistryTable",
            table_name=self._import(
                p.registry_table, p.registry_table.table_name, "RegistryTableName"
            ),
            encryption_key=key_of(p.registry_table.encryption_key, "ModelKey"),
        )
        # The bus's name is fixed by context; importing it still orders AibData first and
        # keeps it from being deleted under the rules that use it.
        platform_bus = events.EventBus.from_event_bus_name(
            self, "PlatformBus", self._import(p.bus, p.bus.event_bus_name, "BusName")
        )
        buckets: dict[str, s3.IBucket] = {MODEL_BUCKET: model_bucket}
        for name, bucket in p.data_buckets.items():
            buckets[name] = s3.Bucket.from_bucket_attributes(
                self,
                f"Bucket{pascal(name)}",
                bucket_arn=self._import(bucket, bucket.bucket_arn, f"Bucket{pascal(name)}Arn"),
                bucket_name=self._import(bucket, bucket.bucket_name, f"Bucket{pascal(name)}Name"),
                encryption_key=key_of(bucket.encryption_key, "DataKey"),
            )
        tables: dict[str, dynamodb.ITable] = {REGISTRY_TABLE: registry_table}
        table_names: dict[str, str] = {}
        for name, table in p.data_tables.items():
            # CDK takes an imported table's ARN or its name, not both; the name from the ARN
            # would be a Select of a Split, so functions get the exported name instead.
            tables[name] = dynamodb.Table.from_table_attributes(
                self,
                f"Table{pascal(name)}",
                table_arn=self._import(table, table.table_arn, f"Table{pascal(name)}Arn"),
                encryption_key=key_of(table.encryption_key, "DataKey"),
            )
            table_names[name] = self._import(table, table.table_name, f"Table{pascal(name)}Name")
        queue_key = key_of(p.queue_key, "QueueKey")
        assert queue_key is not None
        queues: dict[str, sqs.IQueue] = {
            name: sqs.Queue.from_queue_attributes(
                self,
                f"Queue{pascal(name)}",
                queue_arn=self._import(queue, queue.queue_arn, f"Queue{pascal(name)}Arn"),
                queue_url=self._import(queue, queue.queue_url, f"Queue{pascal(name)}Url"),
                key_arn=queue_key.key_arn,
            )
            for name, queue in p.queues.items()
        }
        topics = {
            name: sns.Topic.from_topic_arn(
                self,
                f"Topic{pascal(name)}",
                self._import(topic, topic.topic_arn, f"Topic{pascal(name)}Arn"),
            )
            for name, topic in p.topics.items()
        }
        return SharedResources(
            model_bucket=model_bucket,
            registry_table=registry_table,
            queue_key=queue_key,
            buckets=buckets,
            tables=tables,
            table_names=table_names,
            queues=queues,
            topics=topics,
            buses={
                PLATFORM_BUS: platform_bus,
                DEFAULT_BUS: events.EventBus.from_event_bus_name(self, "DefaultBus", DEFAULT_BUS),
            },
        )

    def _import(self, owner: Construct, value: str, name: str) -> str:
        return import_value(self, owner, value, name)


#: CloudWatch Logs accepts only these retention periods (days), in the enum's order.
_RETENTION_DAYS = (
    *(1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827),
    *(2192, 2557, 2922, 3288, 3653),
)


def _retention(days: int) -> logs.RetentionDays:
    """The shortest CloudWatch retention that keeps logs at least `days` days."""
    finite = [r for r in logs.RetentionDays if r is not logs.RetentionDays.INFINITE]
    for allowed, member in zip(_RETENTION_DAYS, finite, strict=True):
        if allowed >= days:
            return member
    return finite[-1]
