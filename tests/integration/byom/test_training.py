"""The CSV trainer in process: the exported graph, served through the service's own encoding,
matches scikit-learn on the holdout, or nothing is written; failures follow the SageMaker
contract."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from aibackend.byom.training import train
from aibackend.byom.training.columns import plan_dataset
from aibackend.byom.training.csvfile import read_table
from aibackend.training.common import TrainingError
from tests.integration.byom.messy_csv import prices_csv, species_csv

pytestmark = [
    pytest.mark.slow,
    # skl2onnx's tree-ensemble converter passes booleans as ints (onnx warns; fraud's too).
    pytest.mark.filterwarnings("ignore:Field onnx.AttributeProto.ints:DeprecationWarning"),
]
HPS = train.DEFAULT_HYPERPARAMETERS


@pytest.mark.parametrize(
    ("make", "target", "task"),
    [
        (species_csv, "species", "multiclass_classification"),
        (prices_csv, "Price (€)", "regression"),
    ],
)
def test_the_served_graph_matches_scikit_learn_on_the_holdout(
    tmp_path: Path, make: object, target: str, task: str
) -> None:
    # GIVEN a messy CSV planned and fitted
    plan = plan_dataset(read_table(make(tmp_path / "data.csv")), target)  # type: ignore[operator]
    rows, hold = train._split(plan, HPS)
    fitted = train._fit(plan, train._design(plan), rows, hold, HPS)
    # WHEN it is exported and checked through the serving contract
    fields = {
        "name": "m",
        "task": plan.target.task,
        "created_at": "2026-01-01T00:00:00Z",
        "classes": plan.target.classes,
        "metrics": fitted.metrics,
        "training_data": {"fingerprint": "f", "rows": plan.rows, "source": "data.csv"},
        "code_version": "test",
    }
    checked = train.export_checked(
        plan,
        fitted,
        hold,
        fields,
        tmp_path / "out" / "model.onnx",
        opset=train.export_opset(HPS),
        tolerance=1e-4,
    )
    # THEN what is served equals scikit-learn's answer within float32 rounding
    assert checked.card.task == task
    scale = 1.0 if task != "regression" else float(np.abs(fitted.expected).max())
    assert checked.max_diff <= 1e-5 * scale
    np.testing.assert_allclose(checked.served, fitted.expected, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "out" / "model.onnx").is_file()


def test_a_graph_that_disagrees_with_scikit_learn_is_not_written(tmp_path: Path) -> None:
    plan = plan_dataset(read_table(species_csv(tmp_path / "data.csv")), "species")
    rows, hold = train._split(plan, HPS)
    fitted = train._fit(plan, train._design(plan), rows, hold, HPS)
    # GIVEN scikit-learn's holdout answer off by 0.01 (what a converter bug would look like)
    wrong = dataclasses.replace(fitted, expected=fitted.expected + 0.01)
    fields = {
        "name": "m",
        "task": plan.target.task,
        "created_at": "2026-01-01T00:00:00Z",
        "classes": plan.target.classes,
        "metrics": {},
        "training_data": {"fingerprint": "f", "rows": 1, "source": "x"},
        "code_version": "test",
    }
    with pytest.raises(
        TrainingError,
        match=r"ONNX parity check failed: max \|served - "
        r"scikit-learn\| = 0\.01 on 48 holdout rows .* nothing was written",
    ):
        train.export_checked(
            plan,
            wrong,
            hold,
            fields,
            tmp_path / "out" / "model.onnx",
            opset=train.export_opset(HPS),
            tolerance=1e-4,
        )
    assert not (tmp_path / "out").exists()


def test_a_failed_job_exits_2_and_leaves_sagemakers_failure_file(tmp_path: Path) -> None:
    channel = tmp_path / "train"
    channel.mkdir()
    species_csv(channel / "species.csv")
    env = {
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_CHANNEL_TRAIN": str(channel),
        "SM_OUTPUT_DIR": str(tmp_path / "output"),
        "SM_HPS": json.dumps(
            {"name": "species", "target": "petal_length", "task": "classification"}
        ),
    }
    assert train.main([], env) == 2
    failure = (tmp_path / "output" / "failure").read_text()
    assert "target 'petal_length' has 180 distinct values: too many classes" in failure
    assert "use --task regression" in failure
