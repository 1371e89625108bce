"""`aib model import`: an ONNX graph trained elsewhere, checked against its schema file."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aibackend.adapters import model_registry
from aibackend.byom.importer import import_model
from aibackend.catalog import load_catalog
from aibackend.cli import main
from aibackend.errors import ConfigError
from aibackend.settings import PlatformSettings

CHURN_SCHEMA: dict[str, Any] = {
    "description": "Churn risk, exported from the CRM team's notebook",
    "inputs": [
        {"name": "Age_years", "type": "numeric"},
        {"name": "member", "type": "boolean"},
        {"name": "plan", "type": "categorical", "categories": ["basic", "pro"]},
    ],
    "output": {"kind": "classification", "labels": ["stay", "churn"]},
    "metrics": {"roc_auc": 0.81},
    "training_data": {"rows": 5000, "source": "crm.parquet"},
}


@pytest.fixture(autouse=True)
def _restore_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # `--state-dir` exports AIB_STATE_DIR for the process; undo it after each test.
    monkeypatch.setenv("AIB_STATE_DIR", ".aib")


def _schema(tmp_path: Path, schema: dict[str, Any]) -> Path:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    return path


def test_a_graph_with_one_input_per_feature_is_registered_and_promoted(
    tmp_path: Path, model_dir: Path
) -> None:
    settings = PlatformSettings(state_dir=tmp_path / "state")
    # WHEN the graph is imported with its schema
    mv, notes = import_model(
        model_dir / "model.onnx", _schema(tmp_path, CHURN_SCHEMA), name="crm", settings=settings
    )
    # THEN it is version 1, in production, with a card made from the schema and the graph
    registry = model_registry(settings)
    assert (mv.version, registry.production("crm").version) == (1, 1)  # type: ignore[union-attr]
    card = mv.card
    assert card.task == "binary_classification" and card.classes == ("stay", "churn")
    assert [(f.name, f.kind) for f in card.features] == [
        ("Age_years", "numeric"),
        ("member", "boolean"),
        ("plan", "categorical"),
    ]
    assert [i.dtype for i in card.inputs] == ["float32", "float32", "string"]
    assert card.metrics == {"roc_auc": 0.81} and card.training_data.rows == 5000
    assert notes == []  # the graph imputes: missing values are fine


def test_a_float_matrix_graph_without_imputation_is_imported_with_a_warning(
    tmp_path: Path, tiny_model_factory: Callable[..., Path]
) -> None:
    # GIVEN a logistic regression on a [N, 2] matrix, which turns NaN into NaN
    onnx = tiny_model_factory(tmp_path / "lr") / "model.onnx"
    schema = {
        "inputs": [{"name": "x0", "type": "numeric"}, {"name": "x1", "type": "numeric"}],
        "output": {"kind": "classification", "labels": ["neg", "pos"]},
    }
    mv, notes = import_model(
        onnx, _schema(tmp_path, schema), name="lr", settings=PlatformSettings(state_dir=tmp_path)
    )
    assert mv.card.inputs[0].shape == (None, 2)
    assert notes == [
        "the graph gives no finite prediction when values are missing: clients must send every "
        "field (the service answers 422 to a record it cannot score)"
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"inputs": [{"name": "age", "type": "numeric"}, *CHURN_SCHEMA["inputs"][1:]]},
            r"schema.json lists inputs \['age', 'member', 'plan'\], model.onnx takes "
            r"\['Age_years', 'member', 'plan'\]",
        ),
        (
            {"output": {"kind": "classification", "labels": ["a", "b", "c"]}},
            r"no output holds 3 class probabilities",
        ),
        (
            {"inputs": [*CHURN_SCHEMA["inputs"][:2], {"name": "plan", "type": "numeric"}]},
            "input 'plan' is a string tensor but feature 'plan' is numeric",
        ),
        (
            {"inputs": [{"name": "plan", "type": "categorical"}]},
            "inputs.0: input 'plan': a categorical input lists its known `categories`",
        ),
        (
            {"output": {"kind": "classification", "labels": ["yes"]}},
            "output: a classification lists two or more distinct `labels`",
        ),
        ({"inputs": [CHURN_SCHEMA["inputs"][0]] * 2}, "inputs named more than once: Age_years"),
        ({"extra": 1}, "extra: Extra inputs are not permitted"),
    ],
)
def test_a_schema_that_does_not_fit_the_graph_is_refused_with_the_fix(
    tmp_path: Path, model_dir: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        import_model(
            model_dir / "model.onnx",
            _schema(tmp_path, {**CHURN_SCHEMA, **change}),
            name="crm",
            settings=PlatformSettings(state_dir=tmp_path / "state"),
        )
    assert model_registry(PlatformSettings(state_dir=tmp_path / "state")).list_models() == []


def test_scores_declared_as_probabilities_fail_the_smoke_prediction(
    tmp_path: Path, model_factory: Callable[..., Path]
) -> None:
    # GIVEN a graph answering a raw score [N, 1], declared as a two-class classifier
    onnx = model_factory(tmp_path / "scores", task="regression") / "model.onnx"
    with pytest.raises(
        ConfigError,
        match=r"gave \[\[2\.5, -1\.5\]\] for a typical record: not "
        r"probabilities over the 2 labels of schema.json",
    ):
        import_model(
            onnx,
            _schema(tmp_path, CHURN_SCHEMA),
            name="crm",
            settings=PlatformSettings(state_dir=tmp_path),
        )


def test_the_cli_imports_and_scaffolds_a_function_the_catalog_loads(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    functions = tmp_path / "functions"
    functions.mkdir()
    args = [
        *("--functions", str(functions), "--state-dir", str(tmp_path / "state")),
        *("model", "import", "--onnx", str(model_dir / "model.onnx")),
        *("--schema", str(_schema(tmp_path, CHURN_SCHEMA)), "--name", "crm"),
    ]
    code = main(args)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "registered crm v1 (production)" in out
    assert "POST /v1/models/crm/predict         token with scope predict:crm" in out
    assert load_catalog(functions).get("crm").models == ("crm",)
    # WHEN a second version is imported after someone lowered the body limit by hand
    toml = functions / "crm" / "function.toml"
    toml.write_text(re.sub(r"max_body_kb = \d+", "max_body_kb = 1", toml.read_text()))
    assert main(args) == 0
    # THEN the function is kept, and the limit too small for a full batch is pointed out
    out = capsys.readouterr().out
    assert "registered crm v2 (production)" in out and "kept (it serves the new version)" in out
    assert "accepts max_body_kb = 1; 1,000 records of this version need up to 256" in out


def test_the_cli_refuses_a_missing_file_before_registering(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "--functions",
            str(tmp_path),
            "--state-dir",
            str(tmp_path),
            "model",
            "import",
            "--onnx",
            str(tmp_path / "nope.onnx"),
            "--schema",
            str(_schema(tmp_path, CHURN_SCHEMA)),
        ]
    )
    assert code == 1
    assert "nope.onnx: no such ONNX file" in capsys.readouterr().err
