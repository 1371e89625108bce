"""The compact ONNX export of an isolation forest: scikit-learn's scores and labels, in one tree
ensemble instead of one per tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length

from aibackend.models.runtime import create_session
from aibackend.training.common import ML_OPSET, export_checked
from aibackend.training.iforest import average_path_length, isolation_forest_onnx

RNG = np.random.default_rng(7)
TRAIN = RNG.normal(size=(2000, 5)).astype(np.float32)
# Typical points and far outliers, so both labels occur
CHECK = np.vstack([RNG.normal(size=(900, 5)), RNG.normal(scale=6.0, size=(100, 5))]).astype(
    np.float32
)


def run(raw: bytes, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(raw, providers=["CPUExecutionProvider"])
    label, scores = session.run(["label", "scores"], {"features": x})
    return label, scores


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"max_features": 3},  # each tree sees its own feature subset
        {"max_samples": 64, "contamination": 0.05},  # shallower trees, a fitted offset
    ],
    ids=["default", "feature-subsets", "contamination"],
)
def test_scores_and_labels_match_scikit_learn(params: dict[str, Any]) -> None:
    # GIVEN a fitted forest
    forest = IsolationForest(n_estimators=50, random_state=3, **params).fit(TRAIN)
    # WHEN it is exported and run by onnxruntime
    raw = isolation_forest_onnx(forest, 5, input_name="features", opset=17, ml_opset=ML_OPSET)
    label, scores = run(raw, CHECK)
    # THEN the scores are its decision_function and the labels its predict
    assert scores.shape == (len(CHECK), 1) and label.shape == (len(CHECK),)
    np.testing.assert_allclose(scores[:, 0], forest.decision_function(CHECK), atol=1e-5)
    np.testing.assert_array_equal(label, forest.predict(CHECK))
    assert set(label.tolist()) == {-1, 1}


def test_the_graph_is_one_tree_ensemble_whatever_the_number_of_trees() -> None:
    forest = IsolationForest(n_estimators=100, random_state=3).fit(TRAIN)
    graph = onnx.load_from_string(
        isolation_forest_onnx(forest, 5, input_name="features", opset=17, ml_opset=ML_OPSET)
    ).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("TreeEnsembleRegressor") == 1
    assert len(ops) < 12


def test_average_path_length_is_scikit_learns() -> None:
    n = np.array([0, 1, 2, 3, 5, 17, 256, 10_000])
    np.testing.assert_allclose(average_path_length(n), _average_path_length(n), rtol=1e-12)


def test_export_checked_writes_the_compact_graph_and_names_its_converter(tmp_path: Path) -> None:
    # GIVEN a fitted forest WHEN the training code exports it the usual way
    forest = IsolationForest(n_estimators=20, random_state=3).fit(TRAIN)
    exported = export_checked(
        forest, CHECK, forest.decision_function(CHECK).reshape(-1, 1), tmp_path / "model.onnx"
    )
    # THEN the file is the checked compact graph, served the way functions load models
    assert exported.converter == "aibackend.training.iforest"
    assert "aibackend.training.iforest" in exported.tool_versions
    assert exported.max_abs_diff < 1e-5
    session = create_session(exported.path)
    assert [o.name for o in session.get_outputs()] == ["label", "scores"]
