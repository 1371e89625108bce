"""AWS adapters: S3 for objects, DynamoDB for registry records (boto3, imported lazily).

Registry choice: S3 + a DynamoDB table rather than SageMaker Model Registry. Model package
groups carry no per-version JSON we control, cost a control-plane call per read and are
awkward to test; one table keyed by (model, version) plus a pointer item keeps the same
contract as the local SQLite registry and runs under moto in the contract tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from aibackend.adapters.base import RegistryBase
from aibackend.adapters.local import validate_key
from aibackend.errors import ObjectNotFoundError
from aibackend.ports import ModelVersion, ObjectInfo, ObjectStore


@cache
def _client(service: str) -> Any:
    import boto3  # heavy (~180 ms): only functions that touch AWS pay for it

    return boto3.client(service)  # type: ignore[call-overload]


def _not_found(err: Exception) -> bool:
    code = getattr(err, "response", {}).get("Error", {}).get("Code", "")
    return code in ("404", "NoSuchKey", "NotFound")


class S3ObjectStore:
    def __init__(self, bucket: str, client: Any = None) -> None:
        self.bucket = bucket
        self._s3 = client or _client("s3")

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        self._s3.put_object(
            Bucket=self.bucket,
            Key=validate_key(key),
            Body=data,
            ContentType=content_type,
            Metadata=metadata or {},
        )
        return self.head(key)

    def get(self, key: str) -> bytes:
        try:
            body: bytes = self._s3.get_object(Bucket=self.bucket, Key=validate_key(key))[
                "Body"
            ].read()
        except Exception as e:
            if _not_found(e):
                raise ObjectNotFoundError(f"s3://{self.bucket}/{key} does not exist") from e
            raise
        return body

    def head(self, key: str) -> ObjectInfo:
        try:
            r = self._s3.head_object(Bucket=self.bucket, Key=validate_key(key))
        except Exception as e:
            if _not_found(e):
                raise ObjectNotFoundError(f"s3://{self.bucket}/{key} does not exist") from e
            raise
        return ObjectInfo(
            key=key,
            size=r["ContentLength"],
            etag=r["ETag"].strip('"'),
            last_modified=r["LastModified"],
            content_type=r.get("ContentType", "application/octet-stream"),
            metadata=r.get("Metadata", {}),
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            for o in page.get("Contents", []):
                yield ObjectInfo(
                    key=o["Key"],
                    size=o["Size"],
                    etag=o["ETag"].strip('"'),
                    last_modified=o["LastModified"],
                )

    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=validate_key(key))

    def download_file(self, key: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        try:
            self._s3.download_file(self.bucket, validate_key(key), str(tmp))
        except Exception as e:
            if _not_found(e):
                raise ObjectNotFoundError(f"s3://{self.bucket}/{key} does not exist") from e
            raise
        tmp.replace(dest)
        return dest


_POINTER = "POINTER"
_COUNTER = "COUNTER"


class DynamoModelRegistry(RegistryBase):
    """Items: (pk=name, sk=`V#000042`) per version, `POINTER` and `COUNTER` per model."""

    def __init__(self, table: str, store: ObjectStore, client: Any = None) -> None:
        super().__init__(store)
        self.table = table
        self._ddb = client or _client("dynamodb")

    def _next_version(self, name: str) -> int:
        r = self._ddb.update_item(
            TableName=self.table,
            Key={"pk": {"S": name}, "sk": {"S": _COUNTER}},
            UpdateExpression="ADD next_version :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        return int(r["Attributes"]["next_version"]["N"])

    @staticmethod
    def _sk(version: int) -> str:
        return f"V#{version:06d}"

    def _put_record(self, mv: ModelVersion) -> None:
        self._ddb.put_item(
            TableName=self.table,
            Item={
                "pk": {"S": mv.name},
                "sk": {"S": self._sk(mv.version)},
                "version": {"N": str(mv.version)},
                "sha256": {"S": mv.sha256},
                "prefix": {"S": mv.prefix},
                "registered_at": {"S": mv.registered_at.isoformat()},
                "card": {"S": mv.card.model_dump_json()},
            },
            ConditionExpression="attribute_not_exists(pk)",
        )

    @staticmethod
    def _item(name: str, item: dict[str, Any]) -> ModelVersion:
        return ModelVersion.model_validate(
            {
                "name": name,
                "version": int(item["version"]["N"]),
                "sha256": item["sha256"]["S"],
                "prefix": item["prefix"]["S"],
                "registered_at": item["registered_at"]["S"],
                "card": json.loads(item["card"]["S"]),
            }
        )

    def _get_record(self, name: str, version: int) -> ModelVersion | None:
        r = self._ddb.get_item(
            TableName=self.table,
            Key={"pk": {"S": name}, "sk": {"S": self._sk(version)}},
            ConsistentRead=True,
        )
        return self._item(name, r["Item"]) if "Item" in r else None

    def list_models(self) -> list[str]:
        names: set[str] = set()
        pages = self._ddb.get_paginator("scan").paginate(
            TableName=self.table,
            ProjectionExpression="pk, sk",
        )
        for page in pages:
            names.update(i["pk"]["S"] for i in page["Items"] if i["sk"]["S"].startswith("V#"))
        return sorted(names)

    def list_versions(self, name: str) -> list[ModelVersion]:
        pages = self._ddb.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :n AND begins_with(sk, :v)",
            ExpressionAttributeValues={":n": {"S": name}, ":v": {"S": "V#"}},
            ConsistentRead=True,
        )
        return [self._item(name, i) for page in pages for i in page["Items"]]

    def _set_pointer(self, name: str, version: int) -> None:
        self._ddb.put_item(
            TableName=self.table,
            Item={
                "pk": {"S": name},
                "sk": {"S": _POINTER},
                "production": {"N": str(version)},
                "updated_at": {"S": datetime.now(UTC).isoformat()},
            },
        )

    def _get_pointer(self, name: str) -> int | None:
        r = self._ddb.get_item(
            TableName=self.table,
            Key={"pk": {"S": name}, "sk": {"S": _POINTER}},
            ConsistentRead=True,
        )
        return int(r["Item"]["production"]["N"]) if "Item" in r else None
