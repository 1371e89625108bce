"""The training entry point on small data: the card it writes, the catalogue cap, and
failures that leave a reason for SageMaker and no model behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aibackend.models.card import Baseline, ModelCard, check_artifact
from aibackend.recommend.artifact import ModelData, UserHistories
from aibackend.recommend.interactions import Interactions
from aibackend.training.common import TrainingEnv, TrainingError
from aibackend.training.recommendations import (
    DEFAULT_HYPERPARAMETERS,
    export_checked,
    fit,
    main,
    top_items,
)


def test_the_card_holds_model_and_popularity_metrics_and_verifies(
    small_run: TrainingEnv,
) -> None:
    card = check_artifact(small_run.model_dir)  # files present, sha256 matches
    assert card.task == "ranking"
    for metrics in (card.metrics, card.baselines["popularity"]):
        assert set(metrics) == {
            "precision_at_10",
            "recall_at_10",
            "ndcg_at_10",
            "coverage_at_10",
            "users",
        }
        assert 0.0 < metrics["ndcg_at_10"] < 1.0
    assert card.metrics["users"] == 150  # every user had held-out interactions
    assert card.inputs[0].shape == ("batch", 300)
    lines = (small_run.channels["train"] / "interactions.csv").read_text().count("\n")
    assert card.training_data.rows == lines - 1  # the header
    baseline = Baseline.read(small_run.model_dir)
    assert sum(baseline.features["item_id"].frequencies.values()) == pytest.approx(1.0)  # type: ignore[union-attr]


def _interactions(users: list[int], items: list[int]) -> Interactions:
    n = len(users)
    return Interactions(
        user_ids=tuple(f"u{i}" for i in range(max(users) + 1)),
        item_ids=tuple(f"i{i}" for i in range(max(items) + 1)),
        user=np.array(users),
        item=np.array(items),
        rating=None,
        time=np.arange(n, dtype=np.float64),
        has_time=False,
    )


def test_top_items_keeps_the_most_frequent_and_reindexes() -> None:
    # GIVEN item 2 three times, item 0 twice, item 1 once; u1 only touched item 1
    data = _interactions([0, 0, 2, 2, 0, 1], [2, 0, 2, 0, 2, 1])
    kept = top_items(data, 2)
    # THEN the catalogue is items 2 and 0, by count, and u1 is gone with item 1
    assert kept.item_ids == ("i2", "i0")
    assert kept.user_ids == ("u0", "u2")
    assert [
        (kept.user_ids[u], kept.item_ids[i]) for u, i in zip(kept.user, kept.item, strict=True)
    ] == [
        ("u0", "i2"),
        ("u0", "i0"),
        ("u2", "i2"),
        ("u2", "i0"),
        ("u0", "i2"),
    ]


def test_a_failed_parity_check_writes_nothing(tmp_path: Path) -> None:
    data = _interactions([0, 0, 1, 1, 2], [0, 1, 1, 2, 0])
    scorer = fit(data, np.arange(5), DEFAULT_HYPERPARAMETERS | {"factors": 2, "top_k": 3})
    histories = UserHistories.from_pairs(data.user_ids, data.user, data.item)
    model_data = ModelData(data.item_ids, histories)
    dest = tmp_path / "model.onnx"
    with pytest.raises(TrainingError, match=r"ONNX parity check failed.*nothing was written"):
        export_checked(scorer, model_data, dest, tolerance=-1.0, seed=0)
    assert not dest.exists()
    export_checked(scorer, model_data, dest, tolerance=1e-4, seed=0)
    assert dest.is_file()


def test_bad_input_exits_2_with_the_reason_in_the_failure_file(tmp_path: Path) -> None:
    # GIVEN a channel whose file has a non-numeric rating on line 3
    channel = tmp_path / "train"
    channel.mkdir()
    (channel / "mine.csv").write_text("user_id,item_id,rating\nu1,i1,4\nu1,i2,great\n")
    env = {
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_CHANNEL_TRAIN": str(channel),
        "SM_OUTPUT_DIR": str(tmp_path / "output"),
    }
    # WHEN the entry point runs
    code = main([], env)
    # THEN it exits 2 and SageMaker's failure file names the line, column and fix
    assert code == 2
    failure = (tmp_path / "output" / "failure").read_text()
    assert "mine.csv, line 3, column 'rating': 'great' is not a number" in failure
    assert not (tmp_path / "model" / "model.onnx").exists()


def test_unknown_hyperparameters_are_refused(tmp_path: Path) -> None:
    env = {
        "SM_MODEL_DIR": str(tmp_path / "m"),
        "SM_CHANNEL_TRAIN": str(tmp_path),
        "SM_OUTPUT_DIR": str(tmp_path / "out"),
        "SM_HPS": json.dumps({"factor": 3}),
    }
    assert main([], env) == 2
    assert "unknown hyperparameter 'factor'" in (tmp_path / "out" / "failure").read_text()


def test_card_json_stays_small(small_run: TrainingEnv) -> None:
    # The AWS registry keeps each card in a DynamoDB item (400 KB at most): the catalogue
    # lives in model.onnx, so the card's size does not grow with the number of items.
    card = ModelCard.read(small_run.model_dir)
    assert len(card.model_dump_json()) < 4_000
