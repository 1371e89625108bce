"""`AibData`: the platform event bus with its archive, and the data buckets and tables functions
name.

Stateful and independent of AibModels; the group stacks import both by named exports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aws_cdk as cdk
from constructs import Construct

from infra.config import InfraConfig
from infra.constructs.bus import PlatformBus
from infra.constructs.keys import platform_key
from infra.constructs.storage import DataBuckets, DataTables
from infra.naming import pascal


class DataStack(cdk.Stack):
    """Attributes: `key` (kms.Key of the archive, buckets and tables), `bus`
    (events.EventBus), `archive` (events.Archive), `buckets` (logical name -> s3.Bucket),
    `access_logs` (s3.Bucket or None), `tables` (logical name -> dynamodb.Table)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket_names: Sequence[str],
        table_names: Sequence[str],
        config: InfraConfig,
        expirations: Mapping[str, Sequence[tuple[str, int]]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.key = platform_key(
            self,
            "Key",
            purpose="data",
            description="data buckets, data tables and the platform bus archive",
        )
        platform = PlatformBus(
            self,
            "PlatformBus",
            bus_name=config.bus_name,
            archive_retention_days=config.archive_retention_days,
            archive_key=self.key,
        )
        self.bus = platform.bus
        self.archive = platform.archive
        data = DataBuckets(
            self,
            "DataBuckets",
            names=bucket_names,
            key=self.key,
            log_retention_days=config.log_retention_days,
            expirations=expirations,
        )
        self.buckets = data.buckets
        self.access_logs = data.access_logs
        self.tables = DataTables(self, "DataTables", names=table_names, key=self.key).tables

        cdk.CfnOutput(self, "BusName", value=self.bus.event_bus_name)
        cdk.CfnOutput(self, "ArchiveName", value=self.archive.archive_name)
        cdk.CfnOutput(self, "DataKeyArn", value=self.key.key_arn, description="alias/aib/data")
        for name, bucket in self.buckets.items():
            cdk.CfnOutput(
                self,
                f"Bucket{pascal(name)}Name",
                value=bucket.bucket_name,
                description=f"data bucket {name!r}",
            )
        for name, table in self.tables.items():
            cdk.CfnOutput(
                self,
                f"Table{pascal(name)}Name",
                value=table.table_name,
                description=f"data table {name!r}",
            )
