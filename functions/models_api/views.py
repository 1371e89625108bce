"""Public shapes of the registry API, built from the registry's records (internal shapes)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from aibackend.models.card import ModelCard, TensorSpec
from aibackend.ports import (
    Approval,
    GateVerdict,
    Lineage,
    ModelRegistry,
    ModelVersion,
    RegistryEvent,
    Stage,
)


class ModelSummary(BaseModel):
    model_config = ConfigDict(frozen=True, protected_namespaces=())

    name: str
    production_version: int | None
    latest_version: int
    versions: int


class ModelList(BaseModel):
    models: list[ModelSummary]


class GateSummary(BaseModel):
    approved: bool
    failed_checks: list[str]
    evaluated_at: datetime


class VersionSummary(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    version: int
    stage: Stage
    approval: Approval
    registered_at: datetime
    sha256: str
    metrics: dict[str, float]
    gate: GateSummary | None
    parent_version: int | None


class VersionList(BaseModel):
    name: str
    production_version: int | None
    versions: list[VersionSummary]


class CardSummary(BaseModel):
    """What a client needs from the model card: task, inputs, outputs, classes, provenance."""

    task: str
    features: list[str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    classes: list[str]
    baselines: dict[str, dict[str, float]]
    algorithm: str
    description: str


class VersionDetail(VersionSummary):
    name: str
    lineage: Lineage
    evidence: GateVerdict | None
    card: CardSummary
    #: This version's audit trail, oldest first.
    history: list[RegistryEvent]


def model_list(registry: ModelRegistry) -> ModelList:
    models = []
    for name in registry.list_models():
        versions = registry.list_versions(name)
        production = next((v.version for v in versions if v.stage == "production"), None)
        models.append(
            ModelSummary(
                name=name,
                production_version=production,
                latest_version=max(v.version for v in versions),
                versions=len(versions),
            )
        )
    return ModelList(models=models)


def _gate(verdict: GateVerdict | None) -> GateSummary | None:
    if verdict is None:
        return None
    return GateSummary(
        approved=verdict.approved,
        failed_checks=[c.name for c in verdict.failed],
        evaluated_at=verdict.evaluated_at,
    )


def version_summary(mv: ModelVersion) -> VersionSummary:
    return VersionSummary(
        version=mv.version,
        stage=mv.stage,
        approval=mv.approval,
        registered_at=mv.registered_at,
        sha256=mv.sha256,
        metrics=dict(mv.card.metrics),
        gate=_gate(mv.gate),
        parent_version=mv.lineage.parent_version,
    )


def version_list(name: str, versions: list[ModelVersion]) -> VersionList:
    return VersionList(
        name=name,
        production_version=next((v.version for v in versions if v.stage == "production"), None),
        versions=[version_summary(v) for v in versions],
    )


def _card(card: ModelCard) -> CardSummary:
    return CardSummary(
        task=card.task,
        features=[f.name for f in card.features],
        inputs=list(card.inputs),
        outputs=list(card.outputs),
        classes=list(card.classes),
        baselines={k: dict(v) for k, v in card.baselines.items()},
        algorithm=card.algorithm,
        description=card.description,
    )


def version_detail(mv: ModelVersion, history: list[RegistryEvent]) -> VersionDetail:
    return VersionDetail(
        **version_summary(mv).model_dump(),
        name=mv.name,
        lineage=mv.lineage,
        evidence=mv.gate,
        card=_card(mv.card),
        history=history,
    )
