"""`AibModels`: model artifacts and the registry, deployed before any model is pushed."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from infra.config import InfraConfig
from infra.constructs.storage import ModelBucket, RegistryTable


class ModelsStack(cdk.Stack):
    """Attributes: `model_bucket` (s3.Bucket), `registry_table` (dynamodb.Table)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: InfraConfig, **kwargs: object
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        store = ModelBucket(self, "ModelStore", log_retention_days=config.log_retention_days)
        self.model_bucket = store.bucket
        self.registry_table = RegistryTable(
            self, "Registry", table_name=config.registry_table
        ).table

        cdk.CfnOutput(self, "ModelBucketName", value=self.model_bucket.bucket_name)
        cdk.CfnOutput(self, "RegistryTableName", value=self.registry_table.table_name)
