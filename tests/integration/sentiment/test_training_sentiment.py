"""Sentiment training end to end: corpus -> SageMaker-contract entry point -> registry."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from aibackend.adapters import model_registry
from aibackend.models.card import Baseline, ModelCard
from aibackend.sentiment.model import LABELS, load_text_model_dir
from aibackend.settings import PlatformSettings
from aibackend.training.common import TrainingEnv, TrainingError
from aibackend.training.sentiment import (
    DEFAULT_HYPERPARAMETERS,
    HOLDOUT_SOURCE,
    build_pipeline,
    fit,
    main,
    prepare,
    read_sentences,
    train,
)

pytestmark = pytest.mark.slow


def _folder(state: Path) -> Path:
    mv = model_registry(PlatformSettings(state_dir=state)).production("sentiment")
    assert mv is not None
    return state / "buckets" / "models" / "sentiment" / str(mv.version)


def _env(tmp_path: Path) -> TrainingEnv:
    channel = tmp_path / "input" / "data" / "train"
    channel.mkdir(parents=True)
    return TrainingEnv(
        model_dir=tmp_path / "model",
        channels={"train": channel},
        output_data_dir=tmp_path / "output" / "data",
        output_dir=tmp_path / "output",
    )


def test_training_registers_a_model_that_beats_both_baselines_on_the_holdout(
    sentiment_state: Path,
) -> None:
    # GIVEN the model `aib train sentiment` registered as production
    card = ModelCard.read(_folder(sentiment_state))
    # THEN its holdout accuracy and macro F1 beat the majority class and the lexicon
    for name in ("majority_class", "lexicon"):
        for metric in ("accuracy", "macro_f1"):
            assert card.metrics[metric] > card.baselines[name][metric], (name, metric)
    assert card.baselines["majority_class"]["accuracy"] == 0.5  # a balanced holdout
    # AND the metrics are on the whole hand-written holdout, the training on the whole corpus
    assert card.metrics["rows"] == 244 == card.baselines["lexicon"]["rows"]
    assert card.training_data.rows == 3182
    assert card.training_data.source == "train.csv, holdout.csv"
    # AND the card describes a raw-text model
    assert card.classes == LABELS
    assert (card.inputs[0].name, card.inputs[0].dtype, card.inputs[0].shape) == (
        "text",
        "string",
        (None, 1),
    )
    assert card.metrics["parity_max_abs_diff"] < 1e-5
    assert "TfidfVectorizer" in card.algorithm and "LogisticRegression" in card.algorithm
    assert card.hyperparameters["c"] == DEFAULT_HYPERPARAMETERS["c"]


def test_served_graph_reproduces_scikit_learn_on_every_training_and_holdout_sentence(
    sentiment_state: Path, tmp_path: Path
) -> None:
    # GIVEN the same pipeline fitted here, in process, on the same channel data
    train_file = prepare(tmp_path, rows=3182, seed=7)
    hps = DEFAULT_HYPERPARAMETERS
    sk = fit(build_pipeline(hps), read_sentences([train_file], float(hps["handwritten_weight"])))
    texts = read_sentences([train_file]).texts + read_sentences([HOLDOUT_SOURCE]).texts
    # WHEN the registered graph scores every sentence in one batch
    model = load_text_model_dir(_folder(sentiment_state), LABELS)
    got = model.predict_proba(texts)
    # THEN its probabilities equal scikit-learn's within 1e-5
    np.testing.assert_allclose(got, sk.predict_proba(texts), atol=1e-5, rtol=0)


def test_baseline_and_report_describe_the_run(sentiment_state: Path) -> None:
    baseline = Baseline.read(_folder(sentiment_state))
    assert set(baseline.features) == {"characters", "tokens"}
    assert baseline.rows == 3182
    assert baseline.prediction is not None and 0 < baseline.prediction.mean < 1
    # The run's evaluation report lists the holdout sentences the model got wrong, worst first
    [report] = (sentiment_state / "training").glob("sentiment-*/output/data/evaluation.json")
    mistakes = json.loads(report.read_text())["holdout_mistakes"]
    assert mistakes
    for m in mistakes:
        assert (m["p_positive"] >= 0.5) != (m["label"] == "positive")


def test_a_model_that_does_not_beat_the_lexicon_is_not_written(tmp_path: Path) -> None:
    # GIVEN only 30 training sentences
    env = _env(tmp_path)
    prepare(env.channel("train"), rows=30, seed=1)
    # WHEN it trains  THEN the gate refuses it, naming the baseline, and writes nothing
    with pytest.raises(TrainingError, match=r"does not beat lexicon \(0\.7"):
        train(env, DEFAULT_HYPERPARAMETERS)
    assert not (env.model_dir / "model.onnx").exists()


def test_own_data_without_a_holdout_is_scored_on_the_projects_holdout(tmp_path: Path) -> None:
    # GIVEN a channel with one CSV of the caller's own (text, label; no source, no holdout)
    env = _env(tmp_path)
    own = env.channel("train") / "reviews.csv"
    prepare(tmp_path, rows=3182, seed=7)
    with (tmp_path / "train.csv").open(newline="") as src, own.open("w", newline="") as dst:
        w = csv.writer(dst)
        w.writerows([r[0], r[1]] for r in csv.reader(src))
    # WHEN it trains
    card = train(env, DEFAULT_HYPERPARAMETERS)
    # THEN every row weighs the same, and the metrics are on the hand-written holdout
    assert card.training_data.source == f"reviews.csv, {HOLDOUT_SOURCE.name}"
    assert card.metrics["rows"] == 244
    assert (env.model_dir / "model.onnx").is_file()


def test_bad_labels_fail_the_job_with_exit_2_and_a_reason(tmp_path: Path) -> None:
    env = _env(tmp_path)
    (env.channel("train") / "train.csv").write_text("text,label\nfine,positive\nmeh,neutral\n")
    vars_ = {
        "SM_MODEL_DIR": str(env.model_dir),
        "SM_CHANNEL_TRAIN": str(env.channel("train")),
        "SM_OUTPUT_DIR": str(env.output_dir),
    }
    assert main([], vars_) == 2
    failure = (tmp_path / "output" / "failure").read_text()
    assert "train.csv, line 3: label 'neutral' is not one of negative, positive" in failure
