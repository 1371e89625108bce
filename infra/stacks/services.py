"""`AibServices`: layers, queues, one Lambda per declared function with its triggers, and the
REST API in front."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct, IConstruct

from aibackend.auth.apigateway import ROUTES_ENV
from aibackend.catalog import DEFAULT_BUS, PLATFORM_BUS, Access, Catalog
from aibackend.errors import ConfigError
from infra.config import InfraConfig
from infra.constructs.alarms import FunctionAlarms, alarm_topic, watch_queues
from infra.constructs.api import Api, routes_environment
from infra.constructs.identity import Identity
from infra.constructs.keys import allow_eventbridge_dead_letters, platform_key
from infra.constructs.layers import Layers
from infra.constructs.queues import Queues
from infra.constructs.service_function import FunctionSettings, ServiceFunction, SharedResources
from infra.naming import pascal
from infra.triggers import MODEL_BUCKET, REGISTRY_TABLE, topic_names


class ServicesStack(cdk.Stack):
    """Attributes: `layers`, `queues` (Queues), `functions` (name -> ServiceFunction), `api`
    (Api, or None when no function declares a route), `identity` (Identity, the token issuer,
    or None when no route has access = 'token'), `queue_key` (the stack's KMS key),
    `topics` (name -> sns.Topic, from `[resources] topics`), `alarm_topic` (sns.Topic),
    `alarms` (name -> FunctionAlarms), `queue_alarms` (queue name,
    or `<function>-failures` for an on-failure queue -> its alarms' construct)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        catalog: Catalog,
        layers_dir: Path,
        model_bucket: s3.IBucket,
        registry_table: dynamodb.ITable,
        bus: events.IEventBus,
        data_buckets: Mapping[str, s3.IBucket],
        data_tables: Mapping[str, dynamodb.ITable],
        model_versions: Mapping[str, int],
        config: InfraConfig,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        retention = _retention(config.log_retention_days)
        # The stateful stacks' keys come along with their stores, so that the grants of
        # function declarations reach the key of each store they name, and no other.
        keys: dict[str, kms.IKey] = {}

        def key_of(store_key: kms.IKey | None, name: str) -> kms.IKey | None:
            if store_key is None:
                return None
            if name not in keys:
                arn = self._import(store_key, store_key.key_arn, f"{name}Arn")
                keys[name] = kms.Key.from_key_arn(self, name, arn)
            return keys[name]

        model_key = key_of(model_bucket.encryption_key, "ModelKey")
        model_bucket = s3.Bucket.from_bucket_attributes(
            self,
            "ModelBucket",
            bucket_arn=self._import(model_bucket, model_bucket.bucket_arn, "ModelBucketArn"),
            bucket_name=self._import(model_bucket, model_bucket.bucket_name, "ModelBucketName"),
            encryption_key=model_key,
        )
        # Only the name crosses stacks (the table lives in this account and region).
        registry_table = dynamodb.Table.from_table_attributes(
            self,
            "RegistryTable",
            table_name=self._import(registry_table, registry_table.table_name, "RegistryTableName"),
            encryption_key=key_of(registry_table.encryption_key, "ModelKey"),
        )
        # The bus's name is fixed by context; importing it still orders AibData first and
        # keeps it from being deleted under the rules that use it.
        platform_bus = events.EventBus.from_event_bus_name(
            self, "PlatformBus", self._import(bus, bus.event_bus_name, "BusName")
        )
        buckets: dict[str, s3.IBucket] = {MODEL_BUCKET: model_bucket}
        for name, bucket in data_buckets.items():
            buckets[name] = s3.Bucket.from_bucket_attributes(
                self,
                f"Bucket{pascal(name)}",
                bucket_arn=self._import(bucket, bucket.bucket_arn, f"Bucket{pascal(name)}Arn"),
                bucket_name=self._import(bucket, bucket.bucket_name, f"Bucket{pascal(name)}Name"),
                encryption_key=key_of(bucket.encryption_key, "DataKey"),
            )
        tables: dict[str, dynamodb.ITable] = {REGISTRY_TABLE: registry_table}
        table_names: dict[str, str] = {}
        for name, table in data_tables.items():
            # CDK takes an imported table's ARN or its name, not both; the name from the ARN
            # would be a Select of a Split, so functions get the exported name instead.
            tables[name] = dynamodb.Table.from_table_attributes(
                self,
                f"Table{pascal(name)}",
                table_arn=self._import(table, table.table_arn, f"Table{pascal(name)}Arn"),
                encryption_key=key_of(table.encryption_key, "DataKey"),
            )
            table_names[name] = self._import(table, table.table_name, f"Table{pascal(name)}Name")
        self.layers = Layers(self, "Layers", layers_dir=layers_dir)
        # Always there, like the other stacks' keys: alias/aib/services is where an operator
        # looks to read a dead-letter queue, whatever the catalog holds today.
        self.queue_key = platform_key(
            self, "QueueKey", purpose="services", description="queues and dead-letter queues"
        )
        if any(spec.async_delivery for spec in catalog.functions):
            allow_eventbridge_dead_letters(self.queue_key)
        self.queues = Queues(self, "Queues", catalog=catalog, key=self.queue_key)
        # `[resources] topics`: one SNS topic per name, under the stack's key, TLS only.
        self.topics = {
            name: sns.Topic(
                self,
                f"Topic{pascal(name)}",
                display_name=f"aibackend {name}",
                master_key=self.queue_key,
                enforce_ssl=True,
            )
            for name in topic_names(catalog)
        }
        resources = SharedResources(
            model_bucket=model_bucket,
            registry_table=registry_table,
            queue_key=self.queue_key,
            buckets=buckets,
            tables=tables,
            table_names=table_names,
            queues=self.queues.queues,
            topics=self.topics,
            buses={
                PLATFORM_BUS: platform_bus,
                DEFAULT_BUS: events.EventBus.from_event_bus_name(self, "DefaultBus", DEFAULT_BUS),
            },
        )
        settings = FunctionSettings(log_level=config.log_level, log_retention=retention)
        self.alarm_topic = alarm_topic(self, "AlarmTopic", key=self.queue_key)
        self.functions = {
            spec.name: ServiceFunction(
                self,
                pascal(spec.name),
                spec=spec,
                functions_dir=catalog.root,
                layers=self.layers,
                resources=resources,
                model_versions=model_versions,
                settings=settings,
                capture=catalog.capture,
            )
            for spec in catalog.functions
        }
        self.alarms = {
            name: FunctionAlarms(fn, "Alarms", spec=fn.spec, alias=fn.alias, topic=self.alarm_topic)
            for name, fn in self.functions.items()
        }
        self.queue_alarms = watch_queues(
            self.queues,
            catalog=catalog,
            queues=self.queues.queues,
            dead_letter_queues=self.queues.dead_letter_queues,
            failure_queues={name: fn.failures for name, fn in self.functions.items()},
            topic=self.alarm_topic,
        )
        cdk.CfnOutput(
            self,
            "AlarmTopicArn",
            value=self.alarm_topic.topic_arn,
            description="every function's alarms notify this topic: subscribe to it",
        )

        # No routes, no API: a project of queue, event and schedule consumers has no HTTP edge
        # (and API Gateway refuses a REST API without methods).
        self.api: Api | None = None
        self.identity: Identity | None = None
        if any(catalog.routes()):
            routes = [r for _, r in catalog.routes()]
            guarded = [r for r in routes if r.access is not Access.PUBLIC]
            authorizer = self.functions[catalog.authorizer.name] if catalog.authorizer else None
            if guarded and authorizer is None:
                raise ConfigError(
                    f"{catalog.root}: {len(guarded)} route(s) need an API key or a token (e.g. "
                    f"{guarded[0].method} {guarded[0].path}) but no function is the API's "
                    "authorizer: declare one with authorizer = true in its function.toml (like "
                    "functions/authorizer, which reads the api-keys table)"
                )
            token_routes = [r for r in routes if r.access is Access.TOKEN]
            self.api = Api(
                self,
                "Api",
                stage_name=config.stage_name,
                throttle_rate=config.api_throttle_rate,
                throttle_burst=config.api_throttle_burst,
                plans=catalog.plans,
                waf_rate_limit=config.waf_rate_limit,
                log_retention=retention,
                account_role=config.apigw_account_role,
                authorizer=authorizer.alias if authorizer else None,
                authorizer_cache_s=config.authorizer_cache_s,
                bearer_tokens=bool(token_routes),
            )
            for spec, route in catalog.routes():
                self.api.add_route(route, self.functions[spec.name].alias)
            if authorizer is not None:
                # The authorizer's code ships without the catalog: it decides from this table.
                authorizer.function.add_environment(ROUTES_ENV, routes_environment(routes))
            if token_routes:
                assert authorizer is not None  # token routes are guarded routes
                self.identity = Identity(
                    self, "Identity", scopes=[s for r in token_routes for s in r.scopes]
                )
                for name, value in self.identity.token_environment().items():
                    authorizer.function.add_environment(name, value)
                cdk.CfnOutput(self, "UserPoolId", value=self.identity.user_pool.user_pool_id)
                cdk.CfnOutput(self, "TokenUrl", value=self.identity.token_url)
                cdk.CfnOutput(
                    self,
                    "MachineClientId",
                    value=self.identity.machine_client.user_pool_client_id,
                )

            cdk.CfnOutput(self, "ApiUrl", value=self.api.stage.url_for_path("/"))
            # `aib keys create --plan <name>` attaches new keys to these.
            for name, plan in self.api.usage_plans.items():
                cdk.CfnOutput(self, f"UsagePlan{pascal(name)}Id", value=plan.usage_plan_id)

    def _import(self, owner: IConstruct, value: str, name: str) -> str:
        """Reference another stack's attribute through an export named `<stack>-<name>`.

        Named exports, unlike CDK's generated `ExportsOutput...<hash>` ones, survive construct
        refactoring (a renamed export that is in use blocks a deployment) and give stable
        cdk-nag finding ids.
        """
        producer = cdk.Stack.of(owner)
        if producer is self:
            return value
        self.add_stack_dependency(producer)  # an import by name carries no dependency by itself
        return producer.export_value(value, name=f"{producer.stack_name}-{name}")


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
