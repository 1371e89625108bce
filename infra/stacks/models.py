"""`AibModels`: model artifacts and the registry, deployed before any model is pushed."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from infra.config import InfraConfig
from infra.constructs.keys import platform_key
from infra.constructs.storage import ModelBucket, RegistryTable


class ModelsStack(cdk.Stack):
    """Attributes: `key` (kms.Key of both), `model_bucket` (s3.Bucket), `registry_table`
    (dynamodb.Table)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: InfraConfig, **kwargs: object
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        # Functions only decrypt under it (they read artifacts and registry items); the
        # `aib models push` CLI encrypts with the operator's own credentials.
        self.key = platform_key(
            self, "Key", purpose="models", description="model artifacts and the model registry"
        )
        store = ModelBucket(
            self, "ModelStore", key=self.key, log_retention_days=config.log_retention_days
        )
        self.model_bucket = store.bucket
        self.registry_table = RegistryTable(
            self, "Registry", table_name=config.registry_table, key=self.key
        ).table

        cdk.CfnOutput(self, "ModelBucketName", value=self.model_bucket.bucket_name)
        cdk.CfnOutput(self, "RegistryTableName", value=self.registry_table.table_name)
        cdk.CfnOutput(self, "ModelKeyArn", value=self.key.key_arn, description="alias/aib/models")
