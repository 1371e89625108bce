"""A small recommendations model version, trained in process once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from aibackend.recommend.generator import generate_interactions, write_csv
from aibackend.training.common import TrainingEnv
from aibackend.training.recommendations import DEFAULT_HYPERPARAMETERS, train

#: 6,000 interactions of 150 users with 300 items: trains in well under a second.
SMALL = {"rows": 6_000, "users": 150, "items": 300}


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> TrainingEnv:
    """A finished training run on generated data: `channels["train"]` holds the CSV,
    `model_dir` the version folder."""
    root = tmp_path_factory.mktemp("rec-train")
    write_csv(generate_interactions(**SMALL, seed=4), root / "train" / "interactions.csv")
    env = TrainingEnv(model_dir=root / "model", channels={"train": root / "train"})
    train(env, DEFAULT_HYPERPARAMETERS)
    return env


@pytest.fixture
def small_model_dir(small_run: TrainingEnv) -> Path:
    return small_run.model_dir
