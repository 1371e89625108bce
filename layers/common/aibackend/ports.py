"""Ports: the small interfaces logic talks to. Adapters in `aibackend.adapters` implement them.

Two adapter sets exist, `local` (SQLite + files under the state folder) and `aws` (boto3); the
same contract tests run against both.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from aibackend.models.card import ModelCard


class ObjectInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    size: int
    etag: str
    last_modified: datetime
    content_type: str = "application/octet-stream"
    metadata: dict[str, str] = {}


@runtime_checkable
class ObjectStore(Protocol):
    """A bucket: keys to immutable blobs. Writes are atomic: a reader sees all or nothing."""

    bucket: str

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo: ...

    def get(self, key: str) -> bytes: ...

    def head(self, key: str) -> ObjectInfo: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...

    def download_file(self, key: str, dest: Path) -> Path: ...


class ModelVersion(BaseModel):
    """One registered version of a model."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    name: str
    version: int
    sha256: str
    #: Object-store prefix that holds model.onnx, model.json and baseline.json.
    prefix: str
    registered_at: datetime
    card: ModelCard


class ModelRegistry(Protocol):
    """Versions of every model, plus a production pointer per model."""

    def register(self, source_dir: Path) -> ModelVersion:
        """Upload the artifact folder and record it as the model's next version."""
        ...

    def get(self, name: str, version: int) -> ModelVersion: ...

    def list_models(self) -> list[str]: ...

    def list_versions(self, name: str) -> list[ModelVersion]: ...

    def set_production(self, name: str, version: int) -> None: ...

    def production(self, name: str) -> ModelVersion | None: ...

    def download(self, name: str, version: int, dest: Path) -> Path:
        """Copy the version's artifact folder to `dest` (a no-op when already there)."""
        ...
