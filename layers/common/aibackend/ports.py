"""Ports: the small interfaces logic talks to. Adapters in `aibackend.adapters` implement them.

Two adapter sets exist, `local` (SQLite + files under the state folder) and `aws` (boto3); the
same contract tests run against both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

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


# ---------------------------------------------------------------------------------------------
# Queues (SQS semantics: at-least-once, visibility timeout, max receive count, dead-letter queue)


class QueueConfig(BaseModel):
    """How a queue behaves. Locally the runtime creates it; on AWS CDK does."""

    model_config = ConfigDict(frozen=True)

    name: str
    visibility_timeout_s: int = 30
    #: Receives after which a message moves to `dead_letter_queue` (None: never).
    max_receive_count: int | None = None
    dead_letter_queue: str | None = None
    retention_s: int = 345_600
    delay_s: int = 0


class QueueMessage(BaseModel):
    """A received message, with SQS's attribute names."""

    model_config = ConfigDict(frozen=True)

    message_id: str
    receipt_handle: str
    body: str
    md5_of_body: str
    #: `ApproximateReceiveCount`, `SentTimestamp`, `ApproximateFirstReceiveTimestamp`,
    #: `SenderId` (strings, like SQS returns them).
    attributes: dict[str, str] = {}
    message_attributes: dict[str, dict[str, str]] = {}


class QueueStats(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    visible: int
    in_flight: int
    delayed: int = 0
    dead_letter_queue: str | None = None


class Queue(Protocol):
    """One queue. Batches are at most 10 messages, like SQS."""

    name: str

    def send(
        self,
        body: str,
        *,
        delay_s: int | None = None,
        message_attributes: dict[str, dict[str, str]] | None = None,
    ) -> str:
        """Enqueue one message (`delay_s` None: the queue's delay); returns its message id."""
        ...

    def send_batch(self, bodies: Sequence[str], *, delay_s: int | None = None) -> list[str]: ...

    def receive(
        self,
        max_messages: int = 1,
        *,
        wait_s: float = 0,
        visibility_timeout_s: int | None = None,
    ) -> list[QueueMessage]:
        """Up to `max_messages` visible messages, hidden for the visibility timeout."""
        ...

    def delete(self, receipt_handle: str) -> None: ...

    def delete_batch(self, receipt_handles: Sequence[str]) -> None: ...

    def change_visibility(self, receipt_handle: str, timeout_s: int) -> None: ...

    def stats(self) -> QueueStats: ...


class QueueService(Protocol):
    """Queues by logical name."""

    def ensure(self, config: QueueConfig) -> Queue:
        """The queue, created or reconfigured locally; on AWS it must exist (CDK made it)."""
        ...

    def get(self, name: str) -> Queue: ...

    def list(self) -> list[QueueStats]: ...

    def redrive(self, dead_letter_queue: str, *, to: str | None = None) -> int:
        """Move every message of a DLQ back to its source queue (or `to`); returns the count."""
        ...


# ---------------------------------------------------------------------------------------------
# Event bus (EventBridge semantics)


class PutEvent(BaseModel):
    """One `PutEvents` entry."""

    model_config = ConfigDict(frozen=True)

    source: str
    detail_type: str
    detail: dict[str, Any]
    resources: tuple[str, ...] = ()
    time: datetime | None = None
    bus: str = "aib"


class PutEventsResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    #: Per entry, in order: the event id, or None when that entry failed.
    event_ids: tuple[str | None, ...]
    #: Per failed entry: index, error code and message (EventBridge's ErrorCode/ErrorMessage).
    failures: tuple[tuple[int, str, str], ...] = ()

    @property
    def failed_count(self) -> int:
        return len(self.failures)


class EventBus(Protocol):
    def put_events(self, entries: Sequence[PutEvent]) -> PutEventsResult:
        """Publish 1 to 10 events (EventBridge's limit per call)."""
        ...
