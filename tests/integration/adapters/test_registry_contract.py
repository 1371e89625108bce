"""One contract, two adapters: SQLite + files locally, DynamoDB + S3 on AWS (moto)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aibackend.adapters.base import PromotionRefusedError, RegistryConflictError
from aibackend.errors import ModelLoadError, ModelNotFoundError
from aibackend.models.card import ModelCard, sha256_file
from aibackend.ports import GateCheck, GateVerdict, ModelRegistry


def test_register_assigns_increasing_versions_and_stores_the_artifact(
    registry: ModelRegistry, tiny_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    # GIVEN two trained artifact folders of the same model
    a = tiny_model_factory(tmp_path / "a", name="fraud")
    b = tiny_model_factory(tmp_path / "b", name="fraud", weights=(0.5, 0.5))
    # WHEN both are registered
    v1, v2 = registry.register(a), registry.register(b)
    # THEN they get versions 1 and 2, and the stored card carries the version
    assert (v1.version, v2.version) == (1, 2)
    assert [v.version for v in registry.list_versions("fraud")] == [1, 2]
    assert registry.get("fraud", 2).card.version == 2
    assert registry.list_models() == ["fraud"]
    # AND the artifact downloads intact, with the version written into model.json
    out = registry.download("fraud", 2, tmp_path / "dl")
    assert sha256_file(out / "model.onnx") == v2.sha256 == sha256_file(b / "model.onnx")
    assert ModelCard.read(out).version == 2


def test_production_pointer_moves_and_refuses_unknown_versions(
    registry: ModelRegistry, tiny_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    registry.register(tiny_model_factory(tmp_path / "a", name="fraud"))
    registry.register(tiny_model_factory(tmp_path / "b", name="fraud"))
    assert registry.production("fraud") is None
    registry.set_production("fraud", 1)
    assert registry.production("fraud").version == 1  # type: ignore[union-attr]
    registry.set_production("fraud", 2)
    assert registry.production("fraud").version == 2  # type: ignore[union-attr]
    with pytest.raises(ModelNotFoundError, match="no version 7"):
        registry.set_production("fraud", 7)
    assert registry.production("fraud").version == 2  # type: ignore[union-attr]


def test_models_are_independent(
    registry: ModelRegistry, tiny_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    registry.register(tiny_model_factory(tmp_path / "a", name="fraud"))
    registry.register(tiny_model_factory(tmp_path / "b", name="churn"))
    assert registry.list_models() == ["churn", "fraud"]
    assert registry.get("churn", 1).name == "churn"
    with pytest.raises(ModelNotFoundError):
        registry.get("churn", 2)


def test_a_tampered_artifact_is_refused_at_registration(
    registry: ModelRegistry, tiny_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    folder = tiny_model_factory(tmp_path / "a", name="fraud")
    with (folder / "model.onnx").open("ab") as f:
        f.write(b"garbage")
    with pytest.raises(ModelLoadError, match=r"does not match model\.json"):
        registry.register(folder)
    assert registry.list_versions("fraud") == []


# --- stages, approval, lineage, audit trail ---------------------------------------------


def _verdict(approved: bool) -> GateVerdict:
    check = GateCheck(name="threshold:roc_auc", passed=approved, value=0.9, threshold=0.85)
    return GateVerdict(approved=approved, checks=(check,), evaluated_at=datetime.now(UTC))


def _three(registry: ModelRegistry, factory: Callable[..., Path], tmp: Path) -> None:
    for i in range(3):
        registry.register(factory(tmp / str(i), name="fraud", weights=(1.0, float(i))))


def test_a_new_version_is_a_pending_candidate_with_its_lineage_and_a_registered_event(
    registry: ModelRegistry, tiny_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    # GIVEN a production v1
    registry.register(tiny_model_factory(tmp_path / "a", name="fraud"))
    registry.set_production("fraud", 1)
    # WHEN v2 is registered
    v2 = registry.register(tiny_model_factory(tmp_path / "b", name="fraud"), actor="ci")
    # THEN it is a pending candidate whose lineage names its data, code, parent and artifact
    assert (v2.stage, v2.approval.status, v2.gate) == ("candidate", "pending", None)
    assert v2.lineage.data_fingerprint == v2.card.training_data.fingerprint
    assert v2.lineage.code_version == "test"
    assert v2.lineage.parent_version == 1
    assert v2.lineage.metrics == {"roc_auc": 0.5}
    assert v2.lineage.artifact.endswith("/fraud/2/") and v2.lineage.artifact.startswith("s3://")
    # AND it reads back the same, with one `registered` event in its trail
    assert registry.get("fraud", 2) == v2
    [event] = registry.history("fraud", 2)
    assert (event.action, event.actor, event.to_stage) == ("registered", "ci", "candidate")


def test_promoting_archives_the_previous_production_version_and_rollback_returns_to_it(
    registry: ModelRegistry, tiny_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    # GIVEN three versions, v1 in production
    _three(registry, tiny_model_factory, tmp_path)
    registry.promote("fraud", 1, actor="ana", reason="first")
    # WHEN v2 and then v3 are promoted
    registry.promote("fraud", 2, actor="ana", reason="better recall")
    registry.promote("fraud", 3, actor="bo", reason="fresher data")
    # THEN exactly one version is production and the ones it replaced are archived
    stages = {v.version: v.stage for v in registry.list_versions("fraud")}
    assert stages == {1: "archived", 2: "archived", 3: "production"}
    # WHEN production is rolled back, twice
    assert registry.rollback("fraud", actor="bo", reason="v3 declines too much").version == 2
    assert registry.rollback("fraud", actor="bo", reason="v2 too").version == 1
    # THEN each rollback went to the version production had before, archiving the current one
    stages = {v.version: v.stage for v in registry.list_versions("fraud")}
    assert stages == {1: "production", 2: "archived", 3: "archived"}
    assert registry.production("fraud").version == 1  # type: ignore[union-attr]
    # AND with nothing before v1 a further rollback is refused, changing nothing
    with pytest.raises(PromotionRefusedError, match="nothing to roll back to"):
        registry.rollback("fraud", actor="bo", reason="again")
    # AND the audit trail tells it all, in time order, with actors and reasons
    trail = [(e.version, e.action, e.actor, e.reason) for e in registry.history("fraud")]
    assert trail[3:] == [
        (1, "promoted", "ana", "first"),
        (2, "promoted", "ana", "better recall"),
        (1, "archived", "ana", "replaced by v2: better recall"),
        (3, "promoted", "bo", "fresher data"),
        (2, "archived", "bo", "replaced by v3: fresher data"),
        (2, "rolled_back", "bo", "v3 declines too much"),
        (3, "archived", "bo", "replaced by v2: v3 declines too much"),
        (1, "rolled_back", "bo", "v2 too"),
        (2, "archived", "bo", "replaced by v1: v2 too"),
    ]
    assert [t[1] for t in trail[:3]] == ["registered"] * 3


def test_the_gate_verdict_sets_the_approval_and_a_rejected_version_needs_force(
    registry: ModelRegistry, tiny_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    # GIVEN v1 approved in production and v2 rejected by the gate
    _three(registry, tiny_model_factory, tmp_path)
    registry.record_gate("fraud", 1, _verdict(True))
    registry.promote("fraud", 1, actor="ana", reason="first")
    v2 = registry.record_gate("fraud", 2, _verdict(False))
    assert (v2.approval.status, v2.approval.by) == ("rejected", "gate")
    assert v2.approval.reason == "failed: threshold:roc_auc"
    assert v2.gate == _verdict(False).model_copy(update={"evaluated_at": v2.gate.evaluated_at})  # type: ignore[union-attr]
    # WHEN it is promoted or staged without force
    with pytest.raises(PromotionRefusedError, match="rejected by gate"):
        registry.promote("fraud", 2, actor="ana", reason="please")
    with pytest.raises(PromotionRefusedError, match="cannot be staged"):
        registry.set_stage("fraud", 2, "staging", actor="ana", reason="please")
    # THEN nothing moved; with force it needs a reason, and then it goes through
    assert registry.production("fraud").version == 1  # type: ignore[union-attr]
    with pytest.raises(PromotionRefusedError, match="needs a reason"):
        registry.promote("fraud", 2, actor="ana", reason=" ", force=True)
    forced = registry.promote("fraud", 2, actor="ana", reason="hotfix, gate flaky", force=True)
    assert (forced.stage, forced.approval.status) == ("production", "rejected")
    assert registry.history("fraud", 2)[-1].reason == "hotfix, gate flaky"


def test_stage_changes_stay_out_of_production(
    registry: ModelRegistry, tiny_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    _three(registry, tiny_model_factory, tmp_path)
    registry.promote("fraud", 1, actor="ana", reason="first")
    # WHEN an approved candidate goes to staging
    staged = registry.set_stage("fraud", 2, "staging", actor="gate", reason="approved")
    # THEN it is staged, and the trail says from where to where
    assert staged.stage == "staging"
    event = registry.history("fraud", 2)[-1]
    assert (event.action, event.from_stage, event.to_stage) == ("stage", "candidate", "staging")
    # AND neither entering nor leaving production is a stage change
    with pytest.raises(PromotionRefusedError, match="use promote"):
        registry.set_stage("fraud", 3, "production", actor="ana", reason="x")  # type: ignore[arg-type]
    with pytest.raises(PromotionRefusedError, match="is production"):
        registry.set_stage("fraud", 1, "archived", actor="ana", reason="x")


def test_of_two_concurrent_promotions_one_wins_and_the_other_changes_nothing(
    registry: ModelRegistry,
    tiny_model_factory: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN v1 in production, and a promoter who read the pointer before another moved it
    _three(registry, tiny_model_factory, tmp_path)
    registry.promote("fraud", 1, actor="ana", reason="first")
    stale = registry._get_pointer("fraud")  # type: ignore[attr-defined]
    registry.promote("fraud", 2, actor="bo", reason="bo was faster")
    monkeypatch.setattr(registry, "_get_pointer", lambda name: stale)
    before = (registry.list_versions("fraud"), registry.history("fraud"))
    # WHEN the slow promoter writes v3 on top of what it read
    with pytest.raises(RegistryConflictError, match="retry"):
        registry.promote("fraud", 3, actor="ana", reason="ana was slower")
    # THEN the winner stands: no stage, pointer or audit event of the loser was written
    monkeypatch.undo()
    assert registry.production("fraud").version == 2  # type: ignore[union-attr]
    assert (registry.list_versions("fraud"), registry.history("fraud")) == before
