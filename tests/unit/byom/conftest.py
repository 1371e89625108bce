"""Small ONNX graphs shaped like what `aib model train` exports: one input per feature, a
string input for the categorical, preprocessing inside the graph. Built with onnx.helper so
unit tests need no scikit-learn."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aibackend.models.card import (
    Baseline,
    Feature,
    ModelCard,
    TensorSpec,
    TrainingData,
    sha256_file,
)

FEATURES = (
    Feature(name="Age (years)", kind="numeric"),
    Feature(name="member", kind="boolean"),
    Feature(name="plan", kind="categorical", categories=("basic", "pro")),
)
INPUTS = ("Age_years", "member", "plan")


def write_model(
    folder: Path,
    *,
    name: str = "tiny_churn",
    impute: bool = True,
    task: str = "binary_classification",
) -> Path:
    """p(churn) = sigmoid(0.05 age - member + code(plan) - 2.5), code: basic 1, pro 0, other
    0.5; for regression the logit itself. `impute`: a missing age is 40 and a missing member
    false, inside the graph; without it NaN flows through to the answer."""
    import onnx
    from onnx import TensorProto, helper

    ml = "ai.onnx.ml"
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node(
            "LabelEncoder",
            ["plan"],
            ["plan_code"],
            domain=ml,
            keys_strings=["basic", "pro"],
            values_floats=[1.0, 0.0],
            default_float=0.5,
        ),
    ]
    age, member = "Age_years", "member"
    if impute:
        nodes += [
            helper.make_node(
                "Imputer",
                [age],
                ["age_i"],
                domain=ml,
                imputed_value_floats=[40.0],
                replaced_value_float=float("nan"),
            ),
            helper.make_node(
                "Imputer",
                [member],
                ["member_i"],
                domain=ml,
                imputed_value_floats=[0.0],
                replaced_value_float=float("nan"),
            ),
        ]
        age, member = "age_i", "member_i"
    nodes += [
        helper.make_node("Concat", [age, member, "plan_code"], ["x"], axis=1),
        helper.make_node("MatMul", ["x", "w"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["z"]),
    ]
    if task == "regression":
        outputs = [helper.make_tensor_value_info("z", f, [None, 1])]
        classes: tuple[str, ...] = ()
    else:
        nodes += [
            helper.make_node("Sigmoid", ["z"], ["p1"]),
            helper.make_node("Sub", ["one", "p1"], ["p0"]),
            helper.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
        ]
        outputs = [helper.make_tensor_value_info("probabilities", f, [None, 2])]
        classes = ("stay", "churn")
    graph = helper.make_graph(
        nodes,
        name,
        [
            helper.make_tensor_value_info("Age_years", f, [None, 1]),
            helper.make_tensor_value_info("member", f, [None, 1]),
            helper.make_tensor_value_info("plan", TensorProto.STRING, [None, 1]),
        ],
        outputs,
        initializer=[
            helper.make_tensor("w", f, [3, 1], [0.05, -1.0, 1.0]),
            helper.make_tensor("b", f, [1], [-2.5]),
            *([helper.make_tensor("one", f, [1], [1.0])] if classes else []),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ml, 2)]
    )
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    ModelCard(
        name=name,
        task=task,  # type: ignore[arg-type]
        created_at=datetime.now(UTC),
        sha256=sha256_file(folder / "model.onnx"),
        features=FEATURES,
        inputs=(
            TensorSpec(name="Age_years", dtype="float32", shape=(None, 1)),
            TensorSpec(name="member", dtype="float32", shape=(None, 1)),
            TensorSpec(name="plan", dtype="string", shape=(None, 1)),
        ),
        outputs=tuple(
            TensorSpec(name=o.name, dtype="float32", shape=(None, 1 if classes == () else 2))
            for o in outputs
        ),
        classes=classes,
        metrics={"roc_auc": 0.8} if classes else {"rmse": 1.0},
        training_data=TrainingData(fingerprint="0" * 64, rows=100, source="test"),
        code_version="test",
    ).write(folder)
    Baseline(rows=0, features={}).write(folder)
    return folder


@pytest.fixture
def model_factory() -> Callable[..., Path]:
    return write_model


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return write_model(tmp_path / "artifact")
