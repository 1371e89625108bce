"""Records written before stages existed still read: stage from the production pointer,
approval pending, lineage from the card; and they take part in promotions like new ones."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import boto3
from moto import mock_aws

from aibackend.adapters.aws import DynamoModelRegistry, S3ObjectStore
from aibackend.adapters.local import LocalObjectStore, SqliteModelRegistry
from aibackend.models.card import ModelCard
from aibackend.ports import ModelRegistry
from tests.support import create_registry_table

#: The registry schema before stages, approval, lineage and the audit trail.
OLD_SCHEMA = """
CREATE TABLE model_versions (
  name TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL, prefix TEXT NOT NULL,
  registered_at TEXT NOT NULL, card TEXT NOT NULL, PRIMARY KEY (name, version)
);
CREATE TABLE model_pointers (
  name TEXT PRIMARY KEY, production INTEGER NOT NULL, updated_at TEXT NOT NULL
);
"""


def _cards(factory: Callable[..., Path], tmp: Path) -> list[ModelCard]:
    return [
        ModelCard.read(factory(tmp / str(v), name="fraud")).model_copy(update={"version": v})
        for v in (1, 2)
    ]


def _check_legacy(registry: ModelRegistry) -> None:
    # THEN v2 (the pointer's) reads as production, v1 as a candidate, both pending
    v1, v2 = registry.list_versions("fraud")
    assert (v1.stage, v2.stage) == ("candidate", "production")
    assert v1.approval.status == v2.approval.status == "pending"
    # AND lineage comes from the card, with the artifact location; no parent is known
    assert v2.lineage.data_fingerprint == v2.card.training_data.fingerprint
    assert v2.lineage.artifact.endswith("/fraud/2/")
    assert v2.lineage.parent_version is None
    assert registry.history("fraud") == []
    # AND a promotion works on them: v1 becomes production, v2 archived, rollback returns
    registry.promote("fraud", 1, actor="ana", reason="back to v1")
    assert [v.stage for v in registry.list_versions("fraud")] == ["production", "archived"]
    assert registry.rollback("fraud", actor="ana", reason="undo").version == 2


def test_an_old_sqlite_registry_reads_with_defaults_and_migrates_in_place(
    tmp_path: Path, tiny_model_factory: Callable[..., Path]
) -> None:
    # GIVEN a registry.db written by the previous release: two versions, v2 in production
    db = tmp_path / "registry.db"
    conn = sqlite3.connect(db)
    conn.executescript(OLD_SCHEMA)
    now = datetime.now(UTC).isoformat()
    for card in _cards(tiny_model_factory, tmp_path):
        row = (card.name, card.version, card.sha256, f"fraud/{card.version}/", now)
        conn.execute(
            "INSERT INTO model_versions VALUES (?, ?, ?, ?, ?, ?)", (*row, card.model_dump_json())
        )
    conn.execute("INSERT INTO model_pointers VALUES ('fraud', 2, ?)", (now,))
    conn.commit()
    conn.close()
    # WHEN the new registry opens it
    registry = SqliteModelRegistry(db, LocalObjectStore(tmp_path / "bucket", bucket="models"))
    _check_legacy(registry)


def test_old_dynamodb_items_read_with_defaults(
    tmp_path: Path, tiny_model_factory: Callable[..., Path]
) -> None:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="eu-west-1")
        create_registry_table(ddb, "registry")
        # GIVEN items the previous release wrote: versions without stage, a bare pointer
        now = datetime.now(UTC).isoformat()
        for card in _cards(tiny_model_factory, tmp_path):
            item = {
                "pk": {"S": "fraud"},
                "sk": {"S": f"V#{card.version:06d}"},
                "version": {"N": str(card.version)},
                "sha256": {"S": card.sha256},
                "prefix": {"S": f"fraud/{card.version}/"},
                "registered_at": {"S": now},
                "card": {"S": card.model_dump_json()},
            }
            ddb.put_item(TableName="registry", Item=item)
        pointer = {"production": {"N": "2"}, "updated_at": {"S": now}}
        ddb.put_item(
            TableName="registry", Item={"pk": {"S": "fraud"}, "sk": {"S": "POINTER"}, **pointer}
        )
        s3 = boto3.client("s3", region_name="eu-west-1")
        # WHEN the new registry reads them
        registry = DynamoModelRegistry("registry", S3ObjectStore("models", client=s3), client=ddb)
        _check_legacy(registry)
        raw = ddb.get_item(TableName="registry", Key={"pk": {"S": "fraud"}, "sk": {"S": "POINTER"}})
        assert json.loads(raw["Item"]["previous"]["S"]) == []
