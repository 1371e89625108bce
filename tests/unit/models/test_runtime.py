"""The model loader: verified artifacts, one session, errors that say what to fix."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from aibackend.adapters import model_registry
from aibackend.errors import ModelLoadError
from aibackend.models.runtime import load_model, load_model_dir
from aibackend.settings import PlatformSettings


def test_loads_a_valid_artifact_with_one_thread_and_matches_raw_onnxruntime(
    tiny_model_dir: Path,
) -> None:
    # GIVEN a valid artifact folder
    # WHEN it is loaded
    model = load_model_dir(tiny_model_dir)
    # THEN the session runs single-threaded and predictions equal a raw session's
    assert model.session.get_session_options().intra_op_num_threads == 1
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    raw = ort.InferenceSession(str(tiny_model_dir / "model.onnx")).run(None, {"features": x})[1][
        :, 1
    ]
    np.testing.assert_array_equal(model.predict_proba(x), raw.astype(np.float64))
    assert model.predict_proba(x)[1] == pytest.approx(1 / (1 + np.exp(-1.0)), rel=1e-6)


def test_a_modified_model_file_fails_the_checksum(tiny_model_dir: Path) -> None:
    with (tiny_model_dir / "model.onnx").open("ab") as f:
        f.write(b"\x00")
    with pytest.raises(ModelLoadError, match=r"sha256 .* does not match model\.json"):
        load_model_dir(tiny_model_dir)


def test_a_missing_baseline_is_named(tiny_model_dir: Path) -> None:
    (tiny_model_dir / "baseline.json").unlink()
    with pytest.raises(ModelLoadError, match=r"missing baseline\.json"):
        load_model_dir(tiny_model_dir)


def test_a_card_that_disagrees_with_the_graph_is_refused(tiny_model_dir: Path) -> None:
    # GIVEN a model.json declaring three features for a graph that takes two
    card = json.loads((tiny_model_dir / "model.json").read_text())
    card["features"].append({"name": "x2", "kind": "numeric"})
    (tiny_model_dir / "model.json").write_text(json.dumps(card))
    # THEN loading fails and says to retrain or fix model.json
    with pytest.raises(
        ModelLoadError, match=r"declares 3 float features; retrain or fix model\.json"
    ):
        load_model_dir(tiny_model_dir)


def test_wrong_input_width_is_a_clear_error(tiny_model_dir: Path) -> None:
    model = load_model_dir(tiny_model_dir)
    with pytest.raises(ValueError, match=r"expected a \(n, 2\) matrix"):
        model.predict_proba(np.zeros((1, 3), dtype=np.float32))


def test_load_model_serves_the_pinned_version_else_production(
    tmp_path: Path, tiny_model_factory: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a local registry with two versions, production on v1
    settings = PlatformSettings(state_dir=tmp_path / "state")
    reg = model_registry(settings)
    reg.register(tiny_model_factory(tmp_path / "a", name="tiny"))
    reg.register(tiny_model_factory(tmp_path / "b", name="tiny", weights=(3.0, 3.0)))
    reg.set_production("tiny", 1)
    monkeypatch.delenv("AIB_MODEL_TINY_VERSION", raising=False)
    # WHEN nothing pins a version THEN production is served
    assert load_model("tiny", settings).version == 1
    # WHEN the environment pins v2 (what CDK does on AWS) THEN v2 is served
    monkeypatch.setenv("AIB_MODEL_TINY_VERSION", "2")
    assert load_model("tiny", settings).version == 2


def test_no_production_version_tells_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIB_MODEL_NOPE_VERSION", raising=False)
    with pytest.raises(ModelLoadError, match="train one with `aib train nope`"):
        load_model("nope", PlatformSettings(state_dir=tmp_path))


def test_on_aws_an_unpinned_model_is_a_deploy_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIB_MODEL_FRAUD_VERSION", raising=False)
    with pytest.raises(ModelLoadError, match="pinned at deploy time"):
        load_model("fraud", PlatformSettings(adapters="aws"))
