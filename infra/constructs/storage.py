"""Where models live: the artifact bucket and the registry table."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct


class ModelBucket(Construct):
    """Versioned, private, SSL-only bucket of model artifacts (`<model>/<version>/...`).

    Attributes: `bucket` (the artifacts), `access_logs` (its server access log target).
    Both are retained on stack deletion: artifacts are what every deployed version serves.
    """

    def __init__(self, scope: Construct, construct_id: str, *, log_retention_days: int) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            # SSE-S3: S3 log delivery writes here with no KMS key grant to manage.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            removal_policy=cdk.RemovalPolicy.RETAIN,
            lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(log_retention_days))],
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
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
                s3.LifecycleRule(noncurrent_version_expiration=cdk.Duration.days(90)),
            ],
        )


class RegistryTable(Construct):
    """The model registry: `pk` = model name, `sk` = `V#000001` per version, plus `POINTER`.

    Attribute: `table`. Its physical name is fixed (context `aib:registry-table`) so that the
    synth-time version resolver and the `aib` CLI find it without reading stack outputs.
    """

    def __init__(self, scope: Construct, construct_id: str, *, table_name: str) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=table_name,
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
