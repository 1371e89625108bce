"""AWS adapters: S3 for objects, DynamoDB for registry records (boto3, imported lazily).

Registry choice: S3 + a DynamoDB table rather than SageMaker Model Registry. Model package
groups carry no per-version JSON we control, cost a control-plane call per read and are
awkward to test; one table keyed by (model, version) plus a pointer item keeps the same
contract as the local SQLite registry and runs under moto in the contract tests.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from aibackend.adapters.base import (
    Pointer,
    PointerChange,
    RegistryBase,
    RegistryConflictError,
    Transition,
    VersionState,
    lineage_of,
)
from aibackend.adapters.local import validate_key
from aibackend.errors import ObjectNotFoundError
from aibackend.models.card import ModelCard
from aibackend.ports import Canary, ModelVersion, ObjectInfo, ObjectStore, RegistryEvent


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
_EVENT = "E#"


def _code(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


class DynamoModelRegistry(RegistryBase):
    """Items per model (pk=name): `V#000042` per version, `E#<time>#...` per audit event,
    `POINTER` (production and the versions it replaced) and `COUNTER`.

    Changes are one `TransactWriteItems` each; the pointer's put is conditional on the
    production version the change was computed from, so of two concurrent promotions one
    wins and the other gets `RegistryConflictError` with nothing written.
    """

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

    def _event_put(self, event: RegistryEvent) -> dict[str, Any]:
        sk = f"{_EVENT}{event.at.isoformat()}#{event.version:06d}#{uuid.uuid4().hex[:8]}"
        return {
            "Put": {
                "TableName": self.table,
                "Item": {
                    "pk": {"S": event.name},
                    "sk": {"S": sk},
                    "version": {"N": str(event.version)},
                    "event": {"S": event.model_dump_json()},
                },
            }
        }

    def _put_record(self, mv: ModelVersion, event: RegistryEvent) -> None:
        item = {
            "pk": {"S": mv.name},
            "sk": {"S": self._sk(mv.version)},
            "version": {"N": str(mv.version)},
            "sha256": {"S": mv.sha256},
            "prefix": {"S": mv.prefix},
            "registered_at": {"S": mv.registered_at.isoformat()},
            "card": {"S": mv.card.model_dump_json()},
            "stage": {"S": mv.stage},
            "approval": {"S": mv.approval.model_dump_json()},
            "lineage": {"S": mv.lineage.model_dump_json()},
        }
        self._ddb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": item,
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                self._event_put(event),
            ]
        )

    def _item(self, name: str, item: dict[str, Any], pointer: Pointer | None) -> ModelVersion:
        version = int(item["version"]["N"])
        card = json.loads(item["card"]["S"])
        data: dict[str, Any] = {
            "name": name,
            "version": version,
            "sha256": item["sha256"]["S"],
            "prefix": item["prefix"]["S"],
            "registered_at": item["registered_at"]["S"],
            "card": card,
        }
        # Items from before stages existed: production if the pointer names them.
        legacy = "production" if pointer and pointer.production == version else "candidate"
        data["stage"] = item["stage"]["S"] if "stage" in item else legacy
        for key in ("approval", "gate", "lineage"):
            if key in item:
                data[key] = json.loads(item[key]["S"])
        if "lineage" not in item:
            artifact = f"s3://{self.store.bucket}/{data['prefix']}"
            data["lineage"] = lineage_of(ModelCard.model_validate(card), None, artifact)
        return ModelVersion.model_validate(data)

    def _get_record(self, name: str, version: int) -> ModelVersion | None:
        r = self._ddb.get_item(
            TableName=self.table,
            Key={"pk": {"S": name}, "sk": {"S": self._sk(version)}},
            ConsistentRead=True,
        )
        if "Item" not in r:
            return None
        pointer = None if "stage" in r["Item"] else self._get_pointer(name)
        return self._item(name, r["Item"], pointer)

    def list_models(self) -> list[str]:
        names: set[str] = set()
        pages = self._ddb.get_paginator("scan").paginate(
            TableName=self.table,
            ProjectionExpression="pk, sk",
        )
        for page in pages:
            names.update(i["pk"]["S"] for i in page["Items"] if i["sk"]["S"].startswith("V#"))
        return sorted(names)

    def _query(self, name: str, prefix: str) -> list[dict[str, Any]]:
        pages = self._ddb.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :n AND begins_with(sk, :p)",
            ExpressionAttributeValues={":n": {"S": name}, ":p": {"S": prefix}},
            ConsistentRead=True,
        )
        return [i for page in pages for i in page["Items"]]

    def list_versions(self, name: str) -> list[ModelVersion]:
        pointer = self._get_pointer(name)
        return [self._item(name, i, pointer) for i in self._query(name, "V#")]

    def _get_pointer(self, name: str) -> Pointer | None:
        r = self._ddb.get_item(
            TableName=self.table,
            Key={"pk": {"S": name}, "sk": {"S": _POINTER}},
            ConsistentRead=True,
        )
        if "Item" not in r:
            return None
        item = r["Item"]
        previous = json.loads(item["previous"]["S"]) if "previous" in item else []
        canary = Canary.model_validate_json(item["canary"]["S"]) if "canary" in item else None
        return Pointer(
            production=int(item["production"]["N"]), previous=tuple(previous), canary=canary
        )

    def _pointer_put(self, name: str, change: PointerChange) -> dict[str, Any]:
        """The pointer's put, conditional on the production version and the canary (by id:
        `canary_id`) the change was computed from."""
        item: dict[str, Any] = {
            "pk": {"S": name},
            "sk": {"S": _POINTER},
            "production": {"N": str(change.new.production)},
            "previous": {"S": json.dumps(list(change.new.previous))},
            "updated_at": {"S": datetime.now(UTC).isoformat()},
        }
        if change.new.canary is not None:
            item["canary"] = {"S": change.new.canary.model_dump_json()}
            item["canary_id"] = {"S": change.new.canary.id}
        put: dict[str, Any] = {"TableName": self.table, "Item": item}
        if change.expected is None:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
            return {"Put": put}
        values = {":expected": {"N": str(change.expected)}}
        if change.expected_canary is None:
            canary = "attribute_not_exists(canary_id)"
        else:
            canary = "canary_id = :canary"
            values[":canary"] = {"S": change.expected_canary}
        put["ConditionExpression"] = f"production = :expected AND {canary}"
        put["ExpressionAttributeValues"] = values
        return {"Put": put}

    def _state_update(self, name: str, version: int, state: VersionState) -> dict[str, Any]:
        values = {
            ":s": {"S": state.stage},
            ":a": {"S": state.approval.model_dump_json()},
        }
        expression = "SET stage = :s, approval = :a"
        if state.gate is None:
            expression += " REMOVE gate"
        else:
            expression += ", gate = :g"
            values[":g"] = {"S": state.gate.model_dump_json()}
        return {
            "Update": {
                "TableName": self.table,
                "Key": {"pk": {"S": name}, "sk": {"S": self._sk(version)}},
                "UpdateExpression": expression,
                "ExpressionAttributeValues": values,
                "ConditionExpression": "attribute_exists(pk)",
            }
        }

    def _apply(self, t: Transition) -> None:
        items: list[dict[str, Any]] = []
        if t.pointer is not None:
            items.append(self._pointer_put(t.name, t.pointer))
        items += [self._state_update(t.name, v, s) for v, s in t.states.items()]
        items += [self._event_put(e) for e in t.events]
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except Exception as e:
            if _code(e) != "TransactionCanceledException" or t.pointer is None:
                raise
            reasons = getattr(e, "response", {}).get("CancellationReasons", [])
            if reasons and reasons[0].get("Code") != "ConditionalCheckFailed":
                raise
            raise RegistryConflictError(
                f"{t.name}: production moved away from v{t.pointer.expected} (or a canary "
                "started or ended) while this change was made; nothing changed, look and retry"
            ) from e

    def _events(self, name: str) -> list[RegistryEvent]:
        return [
            RegistryEvent.model_validate_json(i["event"]["S"]) for i in self._query(name, _EVENT)
        ]
