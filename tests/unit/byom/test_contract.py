"""Binding a model card to its graph: the layouts served, and refusals that say what to fix."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from aibackend.byom.contract import bind, text_value
from aibackend.errors import ModelLoadError
from aibackend.models.card import Feature, ModelCard, TensorSpec, TrainingData

AGE = Feature(name="age", kind="numeric")
MEMBER = Feature(name="member", kind="boolean")
PLAN = Feature(name="plan", kind="categorical", categories=("basic", " pro "))


@dataclass(frozen=True)
class Arg:
    """Stands in for onnxruntime's NodeArg."""

    name: str
    type: str = "tensor(float)"
    shape: tuple[Any, ...] = (None, 1)


def _card(
    features: tuple[Feature, ...] = (AGE, MEMBER, PLAN),
    inputs: tuple[str, ...] = ("age", "member", "plan"),
    task: str = "binary_classification",
    classes: tuple[str, ...] = ("stay", "churn"),
) -> ModelCard:
    return ModelCard(
        name="m",
        task=task,  # type: ignore[arg-type]
        created_at=datetime.now(UTC),
        sha256="0" * 64,
        features=features,
        inputs=tuple(TensorSpec(name=n, dtype="float32", shape=(None, 1)) for n in inputs),
        outputs=(),
        classes=classes,
        metrics={},
        training_data=TrainingData(fingerprint="x", rows=0, source="test"),
        code_version="test",
    )


COLUMNS = (Arg("age"), Arg("member"), Arg("plan", "tensor(string)"))
PROBS = (Arg("label", "tensor(string)", (None,)), Arg("probabilities", shape=(None, 2)))


def test_one_input_per_feature_feeds_numbers_booleans_and_trimmed_text() -> None:
    # GIVEN a graph with one input per feature, the categorical a string tensor
    contract = bind(_card(), COLUMNS, PROBS, where="g")
    # WHEN two records are fed, one with every value missing
    feed = contract.feed([[31.5, None], [True, None], ["  pro ", "N/A"]])
    # THEN numbers pass, booleans are 1/0, text is trimmed, and missing is NaN or ""
    assert contract.layout == "columns" and contract.output == "probabilities"
    np.testing.assert_array_equal(feed["age"], np.array([[31.5], [math.nan]], np.float32))
    np.testing.assert_array_equal(feed["member"], np.array([[1.0], [math.nan]], np.float32))
    assert feed["plan"].tolist() == [["pro"], [""]]


def test_one_float_matrix_takes_categoricals_as_their_index() -> None:
    contract = bind(_card(inputs=("x",)), (Arg("x", "tensor(double)", ("N", 3)),), PROBS, where="g")
    x = contract.feed([[1.0, 2.0, None], [False, True, None], ["pro", "other", None]])["x"]
    assert contract.layout == "matrix" and x.dtype == np.float64
    np.testing.assert_array_equal(
        x, [[1.0, 0.0, 1.0], [2.0, 1.0, math.nan], [math.nan, math.nan, math.nan]]
    )


def test_a_binary_model_may_answer_the_positive_probability_alone() -> None:
    contract = bind(_card(), COLUMNS, (Arg("p", shape=(None,)),), where="g")
    np.testing.assert_allclose(contract.read(np.array([0.25, 1.0]), 2), [[0.75, 0.25], [0, 1]])


def test_regression_reads_a_column_of_values() -> None:
    contract = bind(_card(task="regression", classes=()), COLUMNS, (Arg("v"),), where="g")
    np.testing.assert_array_equal(contract.read(np.array([[1.5], [2.0]]), 2), [1.5, 2.0])
    with pytest.raises(ModelLoadError, match=r"output 'v' has shape \(1, 2\), expected \(2,\)"):
        contract.read(np.array([[1.5, 2.0]]), 2)


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        (
            COLUMNS[:2],
            PROBS,
            r"g: the graph has 2 input\(s\) \('age' tensor\(float\) \[None, 1\], 'member' "
            r"tensor\(float\) \[None, 1\]\) for 3 features in model.json; it needs one input per "
            r"feature, or one float matrix input \[N, 3\]",
        ),
        (
            (Arg("age"), Arg("member"), Arg("tier", "tensor(string)")),
            PROBS,
            r"model.json names inputs \['age', 'member', 'plan'\], the graph has "
            r"\['age', 'member', 'tier'\]",
        ),
        (
            (Arg("age", "tensor(int64)"), COLUMNS[1], COLUMNS[2]),
            PROBS,
            r"input 'age' is tensor\(int64\); served inputs are float, double or string tensors "
            r"\(an integer cannot carry a missing value\)",
        ),
        (
            (Arg("age", "tensor(string)"), COLUMNS[1], COLUMNS[2]),
            PROBS,
            "input 'age' is a string tensor but feature 'age' is numeric",
        ),
        (
            (Arg("age", shape=(1, 1)), COLUMNS[1], COLUMNS[2]),
            PROBS,
            r"input 'age' has a fixed batch size of 1 \(\[1, 1\]\); export it with a dynamic",
        ),
        (
            (Arg("x", shape=(None, 4)),),
            PROBS,
            r"the graph's one input 'x' is tensor\(float\) \[None, 4\]; for 3 features it must "
            r"be a float matrix \[N, 3\]",
        ),
        (
            COLUMNS,
            (
                Arg("label", "tensor(int64)", (None,)),
                Arg("scores", "seq(map(int64,tensor(float)))"),
            ),
            r"no output holds 2 class probabilities .*; export them as one float tensor \[N, 2\] "
            r"\(skl2onnx: options=\{'zipmap': False\}\)",
        ),
    ],
)
def test_a_graph_that_does_not_fit_its_card_is_refused_with_the_fix(
    inputs: tuple[Arg, ...], outputs: tuple[Arg, ...], message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        bind(_card(), inputs, outputs, where="g")


def test_a_classifier_without_labels_or_an_unserved_task_is_refused() -> None:
    with pytest.raises(ModelLoadError, match=r"needs at least two class labels in schema\.json"):
        bind(_card(classes=()), COLUMNS, PROBS, where="g", label="schema.json")
    with pytest.raises(ModelLoadError, match="task 'ranking' is not served"):
        bind(_card(task="ranking", classes=()), COLUMNS, PROBS, where="g")


@pytest.mark.parametrize(("raw", "text"), [(None, ""), ("  a b ", "a b"), ("NULL", ""), (3, "3")])
def test_categorical_values_are_compared_trimmed_with_blank_tokens_missing(
    raw: object, text: str
) -> None:
    assert text_value(raw) == text
