"""One contract, two adapters: SQLite + files locally, DynamoDB + S3 on AWS (moto)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aibackend.errors import ModelLoadError, ModelNotFoundError
from aibackend.models.card import ModelCard, sha256_file
from aibackend.ports import ModelRegistry


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
