"""Where models and data live: the artifact bucket, the data buckets and tables, the registry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.naming import pascal

#: How long an overwritten or deleted object version stays recoverable.
NONCURRENT_VERSION_DAYS = 90

#: Partition key (string) and TTL attribute (epoch seconds) of every data table: the layout of
#: Powertools' DynamoDB idempotency records and of `aibackend.idempotency`'s effect tables.
DATA_TABLE_KEY = "id"
DATA_TABLE_TTL = "expiration"


def access_log_bucket(scope: Construct, log_retention_days: int) -> s3.Bucket:
    """The server access log target of the buckets in `scope` (retained, like its sources)."""
    return s3.Bucket(
        scope,
        "AccessLogs",
        # SSE-S3, not the stack's key: S3 delivers server access logs only to target buckets
        # whose default encryption is SSE-S3 (SSE-KMS targets are not supported).
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        enforce_ssl=True,
        removal_policy=cdk.RemovalPolicy.RETAIN,
        lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(log_retention_days))],
    )


class ModelBucket(Construct):
    """Versioned, private, SSL-only bucket of model artifacts (`<model>/<version>/...`),
    encrypted under `key` (SSE-KMS).

    Attributes: `bucket` (the artifacts), `access_logs` (its server access log target).
    Both are retained on stack deletion: artifacts are what every deployed version serves.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, key: kms.IKey, log_retention_days: int
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = access_log_bucket(self, log_retention_days)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            # S3 asks KMS for a bucket-level data key now and then instead of calling KMS for
            # every object put and get.
            bucket_key_enabled=True,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            removal_policy=cdk.RemovalPolicy.RETAIN,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="models/",
            lifecycle_rules=[
                # Artifacts are immutable per version; an overwritten object is a mistake
                # worth a recovery window, not a forever bill.
                s3.LifecycleRule(
                    noncurrent_version_expiration=cdk.Duration.days(NONCURRENT_VERSION_DAYS)
                ),
            ],
        )


class DataBuckets(Construct):
    """The buckets function declarations name (other than the model store), created once,
    each encrypted under `key` (SSE-KMS).

    Attributes: `buckets` (logical name -> s3.Bucket), `access_logs` (their log target, or
    None when no declaration names a bucket). Retained on stack deletion: they hold data.

    Each bucket sends its object events to the account's default EventBridge bus, where
    `[[objects]]` triggers subscribe with rules. That keeps the subscriptions in the group stacks:
    a direct bucket notification to a function in another stack would make the two stacks
    depend on each other.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Sequence[str],
        key: kms.IKey,
        log_retention_days: int,
        expirations: Mapping[str, Sequence[tuple[str, int]]] | None = None,
    ) -> None:
        """`expirations`: per bucket, (prefix, days) pairs: objects under the prefix expire
        that many days after they were written (captured inferences, for example)."""
        super().__init__(scope, construct_id)
        self.access_logs = access_log_bucket(self, log_retention_days) if names else None
        expire = expirations or {}
        self.buckets = {name: self._bucket(name, key, expire.get(name, ())) for name in names}

    def _bucket(
        self, name: str, key: kms.IKey, expirations: Sequence[tuple[str, int]]
    ) -> s3.Bucket:
        # S3 needs no permission on the key to publish object events to EventBridge: the
        # event carries the object's metadata, never its content.
        bucket = s3.Bucket(
            self,
            pascal(name),
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=True,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            removal_policy=cdk.RemovalPolicy.RETAIN,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=f"{name}/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    noncurrent_version_expiration=cdk.Duration.days(NONCURRENT_VERSION_DAYS)
                ),
                *(
                    s3.LifecycleRule(
                        id=f"expire-{prefix.strip('/').replace('/', '-')}",
                        prefix=prefix,
                        expiration=cdk.Duration.days(days),
                    )
                    for prefix, days in expirations
                ),
            ],
        )
        # CloudFormation's own switch, not `event_bridge_enabled=True`: that one goes through
        # CDK's notifications custom resource, an extra Lambda with a managed-policy role and
        # s3:PutBucketNotification on every bucket, for a setting CloudFormation has natively.
        cfn = bucket.node.default_child
        assert isinstance(cfn, s3.CfnBucket)
        cfn.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(
                event_bridge_enabled=True
            )
        )
        return bucket


class DataTables(Construct):
    """The tables function declarations name (other than the registry), created once.

    Attribute: `tables` (logical name -> dynamodb.Table). Each has a string partition key
    `id` and expires items by their `expiration` attribute, so one layout serves idempotency
    records and the effects committed next to them. CloudFormation generates the physical
    names (functions learn them from `AIB_TABLE_<NAME>`), the tables are encrypted under
    `key`, and they are retained on stack deletion: they hold data.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, names: Sequence[str], key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        self.tables = {name: self._table(name, key) for name in names}

    def _table(self, name: str, key: kms.IKey) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            pascal(name),
            partition_key=dynamodb.Attribute(
                name=DATA_TABLE_KEY, type=dynamodb.AttributeType.STRING
            ),
            time_to_live_attribute=DATA_TABLE_TTL,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )


class RegistryTable(Construct):
    """The model registry: `pk` = model name, `sk` = `V#000001` per version, plus `POINTER`.

    Attribute: `table`. Its physical name is fixed (context `aib:registry-table`) so that the
    synth-time version resolver and the `aib` CLI find it without reading stack outputs. It is
    encrypted under `key`, the model bucket's: whoever reads a model reads both.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, table_name: str, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=table_name,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
