"""Logic shared by the registry adapters: artifact checks and uploads, stages, approval and the
audit trail, independent of storage.

Subclasses keep the records. Every change of stage or production pointer goes through one
`_apply(Transition)`, which the adapter performs atomically (one SQLite transaction, one
DynamoDB `TransactWriteItems`): version states, audit events and the pointer change together,
and the pointer changes only if it still holds the production version the transition was
computed from, so two promoters cannot both win.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

from pydantic import BaseModel, ConfigDict

from aibackend.errors import AibError, ModelNotFoundError
from aibackend.models.card import (
    ARTIFACT_FILES,
    OPTIONAL_ARTIFACT_FILES,
    ModelCard,
    check_artifact,
)
from aibackend.ports import (
    Approval,
    Canary,
    CanaryCheck,
    CanaryCriteria,
    CanaryMode,
    GateVerdict,
    Lineage,
    ModelVersion,
    ObjectStore,
    RegistryAction,
    RegistryEvent,
    Stage,
)

#: Stages `set_stage` moves between; production is entered by `promote`, left by
#: `promote` (of another version) or `rollback`.
MOVABLE_STAGES: tuple[Stage, ...] = ("candidate", "staging", "archived")


class RegistryConflictError(AibError):
    """The production pointer moved while this change was being made; nothing was changed."""

    status = 409
    title = "Registry conflict"


class PromotionRefusedError(AibError):
    """The requested stage change is not allowed; the message says why and what to do."""

    status = 409
    title = "Promotion refused"


class VersionState(BaseModel):
    """The mutable part of a version record."""

    model_config = ConfigDict(frozen=True)

    stage: Stage
    approval: Approval
    gate: GateVerdict | None = None

    @classmethod
    def of(cls, mv: ModelVersion) -> VersionState:
        return cls(stage=mv.stage, approval=mv.approval, gate=mv.gate)


class Pointer(BaseModel):
    """The production pointer of a model: the version and the ones it replaced (a stack,
    newest last) that `rollback` returns to, and the canary running beside it, if any."""

    model_config = ConfigDict(frozen=True)

    production: int
    previous: tuple[int, ...] = ()
    canary: Canary | None = None


@dataclass(frozen=True)
class PointerChange:
    #: The production version the change was computed from (None: the model had none).
    expected: int | None
    new: Pointer
    #: The id of the canary active when the change was computed (None: there was none); the
    #: change applies only if that is still the case, so a canary starts or ends once.
    expected_canary: str | None = None


@dataclass(frozen=True)
class Transition:
    """Changes to one model, applied all together or not at all."""

    name: str
    states: dict[int, VersionState] = field(default_factory=dict)
    events: tuple[RegistryEvent, ...] = ()
    pointer: PointerChange | None = None


def lineage_of(card: ModelCard, parent: int | None, artifact: str) -> Lineage:
    """Lineage from the model card the training job wrote."""
    return Lineage(
        data_fingerprint=card.training_data.fingerprint,
        code_version=card.code_version or "unknown",
        hyperparameters=dict(card.hyperparameters),
        metrics=dict(card.metrics),
        parent_version=parent,
        artifact=artifact,
    )


def _event(
    mv: ModelVersion,
    action: RegistryAction,
    actor: str,
    reason: str,
    to_stage: Stage | None = None,
    *,
    canary: Canary | None = None,
    evidence: Sequence[CanaryCheck] = (),
) -> RegistryEvent:
    return RegistryEvent(
        name=mv.name,
        version=mv.version,
        at=datetime.now(UTC),
        actor=actor,
        action=action,
        reason=reason,
        from_stage=mv.stage if to_stage is not None else None,
        to_stage=to_stage,
        canary=canary,
        evidence=tuple(evidence),
    )


def _refuse_during_canary(pointer: Pointer | None, name: str, what: str) -> None:
    if pointer is not None and pointer.canary is not None:
        c = pointer.canary
        raise PromotionRefusedError(
            f"{what} of {name} is refused: a {c.mode} of v{c.candidate} is running (since "
            f"{c.started_at:%Y-%m-%d %H:%M:%S} UTC); wait for it to end or stop it with "
            f"`aib models canary {name} --abort --reason ...`"
        )


def _check_canary_start(mv: ModelVersion, pointer: Pointer | None, *, force: bool) -> None:
    """Refuse a canary that cannot start, saying what to do instead."""
    name, version = mv.name, mv.version
    if pointer is None:
        raise PromotionRefusedError(
            f"model {name!r} has no production version to compare v{version} with: promote it "
            f"directly (`aib models promote {name} {version} --reason ...`)"
        )
    _refuse_during_canary(pointer, name, f"a canary of v{version}")
    if pointer.production == version:
        raise PromotionRefusedError(f"{name} v{version} is production already")
    if mv.approval.status != "approved" and not force:
        why = f" ({mv.approval.reason})" if mv.approval.reason else ""
        raise PromotionRefusedError(
            f"{name} v{version} is not approved (approval {mv.approval.status} by "
            f"{mv.approval.by or 'nobody'}{why}): run the gate (`aib train {name}`) or start "
            "the canary anyway with --force and a reason"
        )


def _require_reason(reason: str, what: str) -> str:
    if not reason.strip():
        raise PromotionRefusedError(f"{what} needs a reason (it goes into the audit trail)")
    return reason.strip()


class RegistryBase(ABC):
    """Registers artifact folders into an object store; subclasses keep the records."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @abstractmethod
    def _next_version(self, name: str) -> int: ...

    @abstractmethod
    def _put_record(self, mv: ModelVersion, event: RegistryEvent) -> None:
        """Insert a new version record and its `registered` event (refuse an existing one)."""

    @abstractmethod
    def _get_record(self, name: str, version: int) -> ModelVersion | None: ...

    @abstractmethod
    def list_models(self) -> list[str]: ...

    @abstractmethod
    def list_versions(self, name: str) -> list[ModelVersion]: ...

    @abstractmethod
    def _get_pointer(self, name: str) -> Pointer | None: ...

    @abstractmethod
    def _apply(self, t: Transition) -> None:
        """Apply `t` atomically; raise `RegistryConflictError` if the pointer is no longer
        `t.pointer.expected`."""

    @abstractmethod
    def _events(self, name: str) -> list[RegistryEvent]:
        """Every audit event of `name`, oldest first."""

    # --- registration -------------------------------------------------------------------

    def register(
        self, source_dir: Path, *, parent_version: int | None = None, actor: str = "aib"
    ) -> ModelVersion:
        card = check_artifact(source_dir)
        if parent_version is None:
            pointer = self._get_pointer(card.name)
            parent_version = pointer.production if pointer else None
        version = self._next_version(card.name)
        card = card.model_copy(update={"version": version})
        prefix = f"{card.name}/{version}/"
        for fname in ARTIFACT_FILES:
            data = (
                card.model_dump_json(indent=2).encode() + b"\n"
                if fname == "model.json"
                else (source_dir / fname).read_bytes()
            )
            ctype = "application/json" if fname.endswith(".json") else "application/octet-stream"
            self.store.put(
                prefix + fname, data, content_type=ctype, metadata={"sha256": card.sha256}
            )
        for fname in OPTIONAL_ARTIFACT_FILES:
            if (source_dir / fname).is_file():
                self.store.put(
                    prefix + fname,
                    (source_dir / fname).read_bytes(),
                    content_type="application/octet-stream",
                    metadata={"sha256": card.sha256},
                )
        mv = ModelVersion(
            name=card.name,
            version=version,
            sha256=card.sha256,
            prefix=prefix,
            registered_at=datetime.now(UTC),
            card=card,
            lineage=lineage_of(card, parent_version, f"s3://{self.store.bucket}/{prefix}"),
        )
        event = _event(mv, "registered", actor, f"trained on {card.training_data.source}")
        self._put_record(mv, event.model_copy(update={"to_stage": "candidate"}))
        return mv

    # --- reads --------------------------------------------------------------------------

    def get(self, name: str, version: int) -> ModelVersion:
        mv = self._get_record(name, version)
        if mv is None:
            known = [v.version for v in self.list_versions(name)]
            if not known:
                raise ModelNotFoundError(
                    f"no model {name!r} is registered (known: {self.list_models() or 'none'})"
                )
            raise ModelNotFoundError(f"model {name!r} has no version {version} (known: {known})")
        return mv

    def production(self, name: str) -> ModelVersion | None:
        p = self._get_pointer(name)
        return None if p is None else self.get(name, p.production)

    def history(self, name: str, version: int | None = None) -> list[RegistryEvent]:
        events = self._events(name)
        if version is not None:
            self.get(name, version)  # refuses unknown versions
            events = [e for e in events if e.version == version]
        return sorted(events, key=lambda e: e.at)

    # --- changes ------------------------------------------------------------------------

    def record_gate(self, name: str, version: int, verdict: GateVerdict) -> ModelVersion:
        mv = self.get(name, version)
        failed = ", ".join(c.name for c in verdict.failed)
        reason = "all checks passed" if verdict.approved else f"failed: {failed}"
        approval = Approval(
            status="approved" if verdict.approved else "rejected",
            by="gate",
            reason=reason,
            at=verdict.evaluated_at,
        )
        state = VersionState(stage=mv.stage, approval=approval, gate=verdict)
        self._apply(Transition(name, {version: state}, (_event(mv, "gate", "gate", reason),)))
        return self.get(name, version)

    def set_stage(
        self, name: str, version: int, stage: Stage, *, actor: str, reason: str
    ) -> ModelVersion:
        mv = self.get(name, version)
        if stage not in MOVABLE_STAGES:
            raise PromotionRefusedError(
                f"use promote to make {name} v{version} production, not a stage change"
            )
        if mv.stage == "production":
            raise PromotionRefusedError(
                f"{name} v{version} is production: promote another version or roll back first"
            )
        if stage == "staging" and mv.approval.status == "rejected":
            raise PromotionRefusedError(
                f"{name} v{version} was rejected ({mv.approval.reason}); it cannot be staged"
            )
        if mv.stage == stage:
            return mv
        state = VersionState.of(mv).model_copy(update={"stage": stage})
        event = _event(mv, "stage", actor, reason, to_stage=stage)
        self._apply(Transition(name, {version: state}, (event,)))
        return self.get(name, version)

    def promote(
        self, name: str, version: int, *, actor: str, reason: str, force: bool = False
    ) -> ModelVersion:
        mv = self.get(name, version)
        pointer = self._get_pointer(name)
        _refuse_during_canary(pointer, name, f"promoting v{version}")
        current = pointer.production if pointer else None
        if current == version:
            return mv
        if mv.approval.status == "rejected" and not force:
            raise PromotionRefusedError(
                f"{name} v{version} was rejected by {mv.approval.by} ({mv.approval.reason}); "
                "promote it anyway only with --force and a reason"
            )
        if force:
            reason = _require_reason(reason, f"forcing {name} v{version} into production")
        previous = (*pointer.previous, current) if pointer and current is not None else ()
        return self._switch(
            name,
            mv,
            pointer,
            Pointer(production=version, previous=previous),
            actor,
            reason,
            action="promoted",
        )

    # --- canaries -----------------------------------------------------------------------

    def canary(self, name: str) -> Canary | None:
        pointer = self._get_pointer(name)
        return None if pointer is None else pointer.canary

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
        mv = self.get(name, version)
        pointer = self._get_pointer(name)
        _check_canary_start(mv, pointer, force=force)
        if force:
            reason = _require_reason(reason, f"forcing a canary of {name} v{version}")
        assert pointer is not None  # _check_canary_start refuses a model without production
        canary = Canary(
            id=uuid4().hex,
            candidate=version,
            champion=pointer.production,
            mode=mode,
            percent=percent,
            started_at=datetime.now(UTC),
            window_s=window_s,
            criteria=criteria or CanaryCriteria(),
            actor=actor,
            reason=reason,
        )
        what = f"{mode} of {percent}% for {window_s:g} s beside v{pointer.production}"
        event = _event(mv, "canary_started", actor, f"{what}: {reason}", canary=canary)
        change = PointerChange(pointer.production, pointer.model_copy(update={"canary": canary}))
        self._apply(Transition(name, {}, (event,), change))
        return canary

    def end_canary(
        self,
        name: str,
        *,
        passed: bool,
        actor: str,
        reason: str,
        evidence: Sequence[CanaryCheck] = (),
    ) -> ModelVersion:
        reason = _require_reason(reason, f"ending the canary of {name}")
        pointer = self._get_pointer(name)
        canary = pointer.canary if pointer else None
        if pointer is None or canary is None:
            raise PromotionRefusedError(
                f"model {name!r} has no active canary (start one with "
                f"`aib models promote {name} VERSION --canary --reason ...`)"
            )
        candidate = self.get(name, canary.candidate)
        if passed:
            return self._pass_canary(name, candidate, pointer, canary, actor, reason, evidence)
        rejected = Approval(status="rejected", by="canary", reason=reason, at=datetime.now(UTC))
        state = VersionState(stage="archived", approval=rejected, gate=candidate.gate)
        event = _event(
            candidate,
            "rolled_back",
            actor,
            f"{canary.mode} rolled back, v{pointer.production} stays production: {reason}",
            to_stage="archived",
            canary=canary,
            evidence=evidence,
        )
        change = PointerChange(
            pointer.production, pointer.model_copy(update={"canary": None}), canary.id
        )
        self._apply(Transition(name, {candidate.version: state}, (event,), change))
        return self.get(name, pointer.production)

    def _pass_canary(
        self,
        name: str,
        candidate: ModelVersion,
        pointer: Pointer,
        canary: Canary,
        actor: str,
        reason: str,
        evidence: Sequence[CanaryCheck],
    ) -> ModelVersion:
        passed = _event(candidate, "canary_passed", actor, reason, canary=canary, evidence=evidence)
        previous = (*pointer.previous, pointer.production)
        new = Pointer(production=candidate.version, previous=previous)
        return self._switch(
            name,
            candidate,
            pointer,
            new,
            actor,
            f"{canary.mode} passed: {reason}",
            action="promoted",
            before=(passed,),
            expected_canary=canary.id,
        )

    def set_production(self, name: str, version: int) -> None:
        self.promote(name, version, actor="aib", reason="set as production")

    def rollback(self, name: str, *, actor: str, reason: str) -> ModelVersion:
        reason = _require_reason(reason, f"rolling {name} back")
        pointer = self._get_pointer(name)
        _refuse_during_canary(pointer, name, "rolling back")
        if pointer is None:
            raise PromotionRefusedError(f"model {name!r} has no production version to roll back")
        if not pointer.previous:
            raise PromotionRefusedError(
                f"{name} v{pointer.production} is the first production version: "
                "there is nothing to roll back to (promote another version instead)"
            )
        target = self.get(name, pointer.previous[-1])
        new = Pointer(production=target.version, previous=pointer.previous[:-1])
        return self._switch(name, target, pointer, new, actor, reason, action="rolled_back")

    def _switch(
        self,
        name: str,
        target: ModelVersion,
        pointer: Pointer | None,
        new: Pointer,
        actor: str,
        reason: str,
        *,
        action: RegistryAction,
        before: tuple[RegistryEvent, ...] = (),
        expected_canary: str | None = None,
    ) -> ModelVersion:
        """Move production to `target`, archiving the version it replaces, atomically
        (`before`: events recorded first, in the same change)."""
        states = {
            target.version: VersionState.of(target).model_copy(update={"stage": "production"})
        }
        events = [*before, _event(target, action, actor, reason, to_stage="production")]
        if pointer is not None:
            old = self.get(name, pointer.production)
            states[old.version] = VersionState.of(old).model_copy(update={"stage": "archived"})
            why = f"replaced by v{target.version}: {reason}"
            events.append(_event(old, "archived", actor, why, to_stage="archived"))
        expected = pointer.production if pointer else None
        change = PointerChange(expected, new, expected_canary)
        self._apply(Transition(name, states, tuple(events), change))
        return self.get(name, target.version)

    def download(self, name: str, version: int, dest: Path) -> Path:
        mv = self.get(name, version)
        dest.mkdir(parents=True, exist_ok=True)
        for fname in ARTIFACT_FILES:
            target = dest / fname
            if not target.exists():
                self.store.download_file(mv.prefix + fname, target)
        return dest
