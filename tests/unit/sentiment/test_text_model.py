"""The text-model loader: a string-input graph, checked at load, one `session.run` per batch."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aibackend.errors import ModelLoadError
from aibackend.models.card import ModelCard, TrainingData, sha256_file
from aibackend.sentiment.model import LABELS, load_text_model_dir
from aibackend.training.sentiment import (
    DEFAULT_HYPERPARAMETERS,
    Sentences,
    build_pipeline,
    export_checked,
    fit,
    text_baseline,
)

TEXTS = [
    "great kettle, love it",
    "works great",
    "love the lid",
    "excellent value",
    "terrible, it broke",
    "broke after a day",
    "awful lid",
    "not great at all",
]


@pytest.fixture(scope="module")
def pipeline() -> Any:
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    hps = {**DEFAULT_HYPERPARAMETERS, "min_df": 1}
    return fit(build_pipeline(hps), Sentences(TEXTS, y, np.ones(len(y))))


@pytest.fixture(scope="module")
def artifact(pipeline: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sentiment artifact folder, as training writes it, from eight sentences."""
    folder = tmp_path_factory.mktemp("text-model")
    exported = export_checked(pipeline, TEXTS, folder / "model.onnx", tolerance=1e-5)
    text_baseline(TEXTS, exported.probabilities[:, 1]).write(folder)
    ModelCard(
        name="sentiment",
        version=1,
        task="binary_classification",
        created_at=datetime.now(UTC),
        sha256=sha256_file(exported.path),
        features=(),
        inputs=exported.inputs,
        outputs=exported.outputs,
        classes=LABELS,
        metrics={"accuracy": 1.0},
        training_data=TrainingData(fingerprint="0" * 64, rows=len(TEXTS), source="test"),
        code_version="test",
    ).write(folder)
    return folder


def test_loads_a_string_input_graph_that_matches_scikit_learn(
    artifact: Path, pipeline: Any
) -> None:
    # WHEN the artifact is loaded the way the service loads it
    model = load_text_model_dir(artifact, LABELS)
    # THEN it runs single-threaded and answers like scikit-learn, in input order
    assert model.session.get_session_options().intra_op_num_threads == 1
    assert (model.name, model.version, model.classes) == ("sentiment", 1, LABELS)
    batch = ["LOVE IT", "it broke", "Ça marche 😀", "!!!"]
    got = model.predict_proba(batch)
    np.testing.assert_allclose(got, pipeline.predict_proba(batch), atol=1e-6)
    assert got[0, 1] > 0.5 > got[1, 1]
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)


def test_one_text_and_a_batch_agree(artifact: Path) -> None:
    model = load_text_model_dir(artifact)
    one = model.predict_proba(["works great"])
    many = model.predict_proba(["awful lid", "works great", "broke"])
    np.testing.assert_allclose(one[0], many[1], atol=1e-7)


def test_a_service_expecting_other_classes_refuses_the_model(artifact: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"classes \('negative', 'positive'\) are not the"):
        load_text_model_dir(artifact, ("neg", "neutral", "pos"))


def test_a_float_feature_model_is_not_taken_for_a_text_model(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="expected one string input of shape"):
        load_text_model_dir(tiny_model_dir)


def test_a_modified_graph_fails_the_checksum(artifact: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in artifact.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    with (copy / "model.onnx").open("ab") as f:
        f.write(b"\x00")
    with pytest.raises(ModelLoadError, match=r"does not match model\.json"):
        load_text_model_dir(copy)
