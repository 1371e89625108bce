"""Fraud training end to end: generated data -> SageMaker-contract entry point -> registry."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.metrics import roc_auc_score

from aibackend.adapters import model_registry
from aibackend.fraud.features import FEATURE_NAMES, FEATURES, matrix
from aibackend.fraud.generator import generate_transactions, write_csv
from aibackend.models.card import Baseline, CategoricalStats, ModelCard, NumericStats
from aibackend.models.runtime import load_model_dir
from aibackend.ports import ModelVersion
from aibackend.settings import PlatformSettings
from aibackend.training.common import TrainingError, load_hyperparameters
from aibackend.training.fraud import DEFAULT_HYPERPARAMETERS
from aibackend.training.local import train_local

ROWS = 200_000


class Trained:
    def __init__(self, settings: PlatformSettings, mv: ModelVersion, lines: list[str]) -> None:
        self.settings = settings
        self.mv = mv
        self.lines = lines

    @property
    def folder(self) -> Path:
        return self.settings.state_dir / "buckets" / "models" / "fraud" / str(self.mv.version)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """GIVEN an empty state folder, WHEN the fraud model is trained locally (once per module)."""
    settings = PlatformSettings(state_dir=tmp_path_factory.mktemp("state"))
    lines: list[str] = []
    mv = train_local("fraud", settings, rows=ROWS, seed=11, echo=lines.append)
    return Trained(settings, mv, lines)


@pytest.mark.slow
def test_training_registers_a_production_version_that_beats_its_baseline(
    trained: Trained,
) -> None:
    # THEN the registry serves the new version
    production = model_registry(trained.settings).production("fraud")
    assert production is not None
    assert production.version == trained.mv.version == 1
    # AND its card reports holdout metrics well above chance and above logistic regression
    card = ModelCard.read(trained.folder)
    assert card.version == 1
    assert card.metrics["roc_auc"] >= 0.95
    assert card.metrics["roc_auc"] > card.baselines["logistic_regression"]["roc_auc"]
    assert card.metrics["pr_auc"] > card.baselines["logistic_regression"]["pr_auc"]
    # AND the holdout is the latest 20% of the rows, with its positives counted
    assert card.metrics["rows"] == ROWS * 0.2
    assert 0 < card.metrics["positives"] < card.metrics["rows"]
    # AND it records what it was trained on and how
    assert card.training_data.rows == ROWS
    assert card.training_data.source == "transactions.csv"
    assert card.features == FEATURES
    assert card.classes == ("legit", "fraud")
    assert card.inputs[0].name == "features"
    assert card.inputs[0].shape[1] == len(FEATURES)
    assert card.hyperparameters["learning_rate"] == DEFAULT_HYPERPARAMETERS["learning_rate"]
    assert "HistGradientBoostingClassifier" in card.algorithm


@pytest.mark.slow
def test_training_data_fingerprint_is_the_channel_files_sha256(trained: Trained) -> None:
    import hashlib

    run = next((trained.settings.state_dir / "training").glob("fraud-*"))
    data = run / "input" / "data" / "train" / "transactions.csv"
    expected = hashlib.sha256(data.read_bytes()).hexdigest()
    assert ModelCard.read(trained.folder).training_data.fingerprint == expected


@pytest.mark.slow
def test_progress_is_streamed_through_echo(trained: Trained) -> None:
    text = "\n".join(trained.lines)
    assert "holdout roc_auc=" in text
    assert "parity with scikit-learn" in text
    assert trained.lines[-1].endswith("as the first version, now production")


@pytest.mark.slow
def test_baseline_describes_every_feature_and_the_predictions(trained: Trained) -> None:
    baseline = Baseline.read(trained.folder)
    assert tuple(baseline.features) == FEATURE_NAMES
    for f in FEATURES:
        stats = baseline.features[f.name]
        if f.kind == "categorical":
            assert isinstance(stats, CategoricalStats)
            assert set(f.categories) <= set(stats.frequencies)
            assert sum(stats.frequencies.values()) == pytest.approx(1.0)
        else:
            assert isinstance(stats, NumericStats)
            assert len(stats.quantiles) == 11
            assert stats.quantiles[0] == stats.min
            assert stats.quantiles[-1] == stats.max
    # Training rows (the 80% before the holdout) and the holdout's predicted probabilities
    assert baseline.rows == ROWS * 0.8
    assert baseline.prediction is not None
    assert 0.0 <= baseline.prediction.min <= baseline.prediction.max <= 1.0


@pytest.mark.slow
def test_served_probabilities_equal_a_plain_onnxruntime_session(trained: Trained) -> None:
    # GIVEN the registered artifact loaded the way functions load it
    model = load_model_dir(trained.folder)
    assert model.version == trained.mv.version
    # AND transactions the model has never seen
    fresh = generate_transactions(20_000, seed=123)
    x = matrix(fresh)
    # WHEN both the loader and an independent session score them
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(
        str(trained.folder / "model.onnx"), sess_options=so, providers=["CPUExecutionProvider"]
    )
    independent = sess.run(None, {"features": x})[-1][:, 1].astype(np.float64)
    # THEN the probabilities are bit-for-bit identical
    assert np.array_equal(model.predict_proba(x), independent)
    # AND they still separate fraud from legit on this fresh data
    assert roc_auc_score(fresh["is_fraud"], independent) >= 0.95


@pytest.mark.slow
def test_entry_point_names_a_missing_column_and_exits_non_zero(tmp_path: Path) -> None:
    # GIVEN a channel whose CSV lacks the `amount` column
    channel = tmp_path / "input" / "data" / "train"
    full = tmp_path / "full.csv"
    write_csv(generate_transactions(500, seed=1), full)
    with full.open(newline="") as f:
        rows = list(csv.reader(f))
    drop = rows[0].index("amount")
    channel.mkdir(parents=True)
    with (channel / "transactions.csv").open("w", newline="") as f:
        csv.writer(f).writerows([r[:drop] + r[drop + 1 :] for r in rows])
    model_dir = tmp_path / "model"
    env = {
        "SM_MODEL_DIR": str(model_dir),
        "SM_CHANNEL_TRAIN": str(channel),
        "SM_OUTPUT_DIR": str(tmp_path / "output"),
        "SM_HPS": json.dumps({"max_iter": 10}),
        "PATH": "/usr/bin:/bin",
    }
    # WHEN the entry point runs as SageMaker would start it
    proc = subprocess.run(
        [sys.executable, "-m", "aibackend.training.fraud"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # THEN it fails, naming the column, writes SageMaker's failure file and no model
    assert proc.returncode != 0
    assert "missing column(s) amount" in proc.stderr
    assert "amount" in (tmp_path / "output" / "failure").read_text()
    assert not (model_dir / "model.onnx").exists()


@pytest.mark.slow
def test_entry_point_without_a_channel_says_which_variable_to_set(tmp_path: Path) -> None:
    env = {"SM_MODEL_DIR": str(tmp_path / "model"), "SM_CHANNEL_TRAIN": str(tmp_path / "nope")}
    proc = subprocess.run(
        [sys.executable, "-m", "aibackend.training.fraud"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert "SM_CHANNEL_TRAIN" in proc.stderr


def test_command_line_overrides_sm_hps_which_overrides_defaults() -> None:
    # GIVEN hyperparameters in SM_HPS (as strings, like SageMaker sends them) and on argv
    env = {"SM_HPS": json.dumps({"learning_rate": "0.2", "max_iter": "50"})}
    argv = ["--learning_rate", "0.05", "--early_stopping=false", "--sagemaker_program", "x.py"]
    # WHEN they are loaded
    hps = load_hyperparameters(DEFAULT_HYPERPARAMETERS, argv, env)
    # THEN argv wins over SM_HPS, SM_HPS over the defaults, and types follow the defaults
    assert hps["learning_rate"] == 0.05
    assert hps["max_iter"] == 50
    assert hps["early_stopping"] is False
    assert hps["seed"] == DEFAULT_HYPERPARAMETERS["seed"]
    assert "sagemaker_program" not in hps


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max_iterz", "3"], "unknown hyperparameter 'max_iterz'"),
        (["--max_iter", "many"], "expected an integer, got 'many'"),
        (["--max_iter"], "has no value"),
    ],
)
def test_bad_hyperparameters_are_named(argv: list[str], message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        load_hyperparameters(DEFAULT_HYPERPARAMETERS, argv, {})
