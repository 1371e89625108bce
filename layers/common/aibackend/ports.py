"""Ports: the small interfaces logic talks to. Adapters in `aibackend.adapters` implement them.

Two adapter sets exist, `local` (SQLite + files under the state folder) and `aws` (boto3); the
same contract tests run against both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

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


#: Where a version is in its life: trained (`candidate`), approved by the gate (`staging`),
#: serving (`production`, at most one per model), or retired (`archived`).
Stage = Literal["candidate", "staging", "production", "archived"]
STAGES: tuple[Stage, ...] = ("candidate", "staging", "production", "archived")
ApprovalStatus = Literal["pending", "approved", "rejected"]
RegistryAction = Literal[
    "registered",
    "gate",
    "stage",
    "promoted",
    "archived",
    "rolled_back",
    "canary_started",
    "canary_passed",
]
#: `canary`: a share of the requests is answered by the candidate; `shadow`: the champion
#: answers every request and that share is also scored by the candidate, answer discarded.
CanaryMode = Literal["canary", "shadow"]


class Approval(BaseModel):
    """Whether a version may serve: set by the validation gate (or a person who overrides it)."""

    model_config = ConfigDict(frozen=True)

    status: ApprovalStatus = "pending"
    by: str | None = None
    reason: str = ""
    at: datetime | None = None


class Lineage(BaseModel):
    """Where a version came from: enough to reproduce it and to compare it with its parent."""

    model_config = ConfigDict(frozen=True)

    #: sha256 of the training data as the job read it.
    data_fingerprint: str = ""
    #: Git commit of the training code ("unknown" outside a git checkout).
    code_version: str = "unknown"
    hyperparameters: dict[str, str | int | float | bool] = {}
    metrics: dict[str, float] = {}
    #: The production version when this one was trained (None: the model had none).
    parent_version: int | None = None
    #: Artifact location, `s3://<bucket>/<prefix>`.
    artifact: str = ""


class GateCheck(BaseModel):
    """One check of the validation gate; `passed` None: not applicable (see `detail`)."""

    model_config = ConfigDict(frozen=True)

    name: str
    passed: bool | None
    value: float | None = None
    threshold: float | None = None
    detail: str = ""


class GateVerdict(BaseModel):
    """The validation gate's decision on a candidate and the evidence behind it."""

    model_config = ConfigDict(frozen=True)

    approved: bool
    checks: tuple[GateCheck, ...]
    evaluated_at: datetime
    #: Production version the candidate was compared with (None: there was none).
    compared_with: int | None = None
    holdout_rows: int | None = None

    @property
    def failed(self) -> tuple[GateCheck, ...]:
        return tuple(c for c in self.checks if c.passed is False)


class CanaryCriteria(BaseModel):
    """When a canary's candidate is rolled back instead of promoted (`[canary.<model>]` in
    functions/training.toml)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Candidate's error rate minus the champion's (5xx answers and raised invocations).
    max_error_rate_delta: float = Field(default=0.02, ge=0, le=1)
    #: Candidate's p99 latency over the champion's.
    max_p99_ratio: float = Field(default=1.5, gt=0)
    #: Wasserstein-1 distance between the score distributions, in score units (how far the
    #: scores moved on average); it breaches only when the KS test also finds them different
    #: (p < `alpha`), so sampling noise alone does not roll back.
    max_score_drift: float = Field(default=0.05, gt=0)
    #: Requests each side must have answered before anything is judged; a window that ends
    #: with fewer rolls back (not enough evidence to promote).
    min_requests: int = Field(default=100, ge=1)
    #: Significance level of the error-rate and score tests.
    alpha: float = Field(default=0.01, gt=0, lt=1)


class Canary(BaseModel):
    """A candidate served beside the production version (the champion) for a window."""

    model_config = ConfigDict(frozen=True)

    #: Unique per canary (the local deployment id).
    id: str
    candidate: int
    champion: int
    mode: CanaryMode = "canary"
    #: Share of the requests the candidate sees, in percent.
    percent: int = Field(default=10, ge=1, le=99)
    started_at: datetime
    window_s: float = Field(gt=0)
    criteria: CanaryCriteria = CanaryCriteria()
    actor: str
    reason: str = ""

    @property
    def ends_at(self) -> datetime:
        return self.started_at + timedelta(seconds=self.window_s)


class CanaryCheck(BaseModel):
    """One criterion of a canary judgement; `passed` None: not judged yet (see `detail`)."""

    model_config = ConfigDict(frozen=True)

    name: str
    passed: bool | None
    value: float | None = None
    threshold: float | None = None
    champion_samples: int = 0
    candidate_samples: int = 0
    detail: str = ""


class ModelVersion(BaseModel):
    """One registered version of a model.

    Records written before stages existed read with defaults: `candidate` (or `production`
    when the production pointer names them), approval pending, lineage from the card.
    """

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    name: str
    version: int
    sha256: str
    #: Object-store prefix that holds model.onnx, model.json and baseline.json.
    prefix: str
    registered_at: datetime
    card: ModelCard
    stage: Stage = "candidate"
    approval: Approval = Approval()
    lineage: Lineage = Lineage()
    gate: GateVerdict | None = None


class RegistryEvent(BaseModel):
    """One entry of a model's append-only audit trail."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    at: datetime
    actor: str
    action: RegistryAction
    reason: str = ""
    from_stage: Stage | None = None
    to_stage: Stage | None = None
    #: Canary events: the canary, and the checks that decided its end.
    canary: Canary | None = None
    evidence: tuple[CanaryCheck, ...] = ()


class ModelRegistry(Protocol):
    """Versions of every model with their stage, approval, lineage and audit trail, plus a
    production pointer per model (at most one production version)."""

    def register(
        self, source_dir: Path, *, parent_version: int | None = None, actor: str = "aib"
    ) -> ModelVersion:
        """Upload the artifact folder and record it as the model's next version (`candidate`).

        `parent_version`: the production version when the job started (default: the current
        production version)."""
        ...

    def get(self, name: str, version: int) -> ModelVersion: ...

    def list_models(self) -> list[str]: ...

    def list_versions(self, name: str) -> list[ModelVersion]: ...

    def set_production(self, name: str, version: int) -> None:
        """Promote `version` (the previous production version is archived)."""
        ...

    def production(self, name: str) -> ModelVersion | None: ...

    def record_gate(self, name: str, version: int, verdict: GateVerdict) -> ModelVersion:
        """Store the gate's verdict and evidence; approval follows the verdict."""
        ...

    def set_stage(
        self, name: str, version: int, stage: Stage, *, actor: str, reason: str
    ) -> ModelVersion:
        """Move a version between candidate, staging and archived (not into or out of
        production: that is `promote` and `rollback`)."""
        ...

    def promote(
        self, name: str, version: int, *, actor: str, reason: str, force: bool = False
    ) -> ModelVersion:
        """Make `version` production and archive the previous one, atomically; a rejected
        version only with `force`."""
        ...

    def rollback(self, name: str, *, actor: str, reason: str) -> ModelVersion:
        """Make the previous production version production again; returns it."""
        ...

    def history(self, name: str, version: int | None = None) -> list[RegistryEvent]:
        """The audit trail of a model (or one version), oldest first."""
        ...

    def start_canary(
        self,
        name: str,
        version: int,
        *,
        actor: str,
        reason: str,
        mode: CanaryMode = "canary",
        percent: int = 10,
        window_s: float = 300.0,
        criteria: CanaryCriteria | None = None,
        force: bool = False,
    ) -> Canary:
        """Start serving `version` beside production (an approved version; any other only
        with `force`); production does not move until `end_canary`."""
        ...

    def canary(self, name: str) -> Canary | None:
        """The model's active canary, if any."""
        ...

    def end_canary(
        self,
        name: str,
        *,
        passed: bool,
        actor: str,
        reason: str,
        evidence: Sequence[CanaryCheck] = (),
    ) -> ModelVersion:
        """End the active canary: `passed` promotes the candidate (`canary_passed`,
        `promoted`), otherwise it is archived and rejected (`rolled_back`) and production stays;
        returns the production version."""
        ...

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
