"""The served recommender on a small trained version: personalized for known users and
sessions, never a seen item, popularity otherwise; a bad artifact is refused."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from aibackend.errors import ModelLoadError
from aibackend.models.card import ModelCard, sha256_file
from aibackend.recommend.recommender import Recommender, load_recommender_dir
from aibackend.training.common import TrainingEnv


@pytest.fixture(scope="module")
def rows(small_run: TrainingEnv) -> list[tuple[str, str]]:
    with (small_run.channels["train"] / "interactions.csv").open() as f:
        return [(r["user_id"], r["item_id"]) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def model(small_run: TrainingEnv) -> Recommender:
    return load_recommender_dir(small_run.model_dir)


def _items_of(rows: list[tuple[str, str]], user: str) -> set[str]:
    return {item for u, item in rows if u == user}


def test_a_known_user_gets_unseen_items_best_first(
    model: Recommender, rows: list[tuple[str, str]]
) -> None:
    # GIVEN a user of the training data
    user = rows[0][0]
    # WHEN 10 items are asked for
    ranked = model.for_user(user, 10)
    # THEN 10 distinct items come back, none the user interacted with, scores descending
    assert ranked.strategy == "personalized"
    assert len(set(ranked.item_ids)) == 10
    assert not set(ranked.item_ids) & _items_of(rows, user)
    assert list(ranked.scores) == sorted(ranked.scores, reverse=True)


def test_an_unknown_user_gets_the_most_popular_items(
    model: Recommender, rows: list[tuple[str, str]]
) -> None:
    ranked = model.for_user("never-seen", 5)
    # THEN the five items most users interacted with, as counted from the file itself
    users_per_item = Counter(item for _, item in set(rows))
    assert ranked.strategy == "popularity"
    assert list(ranked.item_ids) == [i for i, _ in users_per_item.most_common(5)]
    assert ranked.scores[0] == pytest.approx(users_per_item.most_common(1)[0][1] / len(set(rows)))


def test_a_session_with_a_users_items_ranks_like_that_user(
    model: Recommender, rows: list[tuple[str, str]]
) -> None:
    # GIVEN an anonymous session that touched exactly a known user's items, plus unknown ids
    user = rows[0][0]
    items = sorted(_items_of(rows, user))
    ranked = model.for_items(["nope", *items, "zip", "nope"], 10)
    # THEN it gets the user's recommendations (user vectors come from items the same way)
    assert ranked.item_ids == model.for_user(user, 10).item_ids
    # AND the unknown ids are reported once each, in request order
    assert ranked.unknown_items == ("nope", "zip")


def test_a_session_without_known_items_falls_back_to_popularity(model: Recommender) -> None:
    assert model.for_items([], 3).strategy == "popularity"
    ranked = model.for_items(["x", "y"], 3)
    assert ranked.strategy == "popularity"
    assert ranked.unknown_items == ("x", "y")
    assert ranked.item_ids == model.for_user("anyone-new", 3).item_ids


def test_k_beyond_the_graphs_top_k_returns_what_there_is(model: Recommender) -> None:
    assert len(model.for_user("anyone-new", model.top_k + 50).item_ids) == model.top_k
    with pytest.raises(ValueError, match="k must be at least 1"):
        model.for_user("anyone-new", 0)


def _refresh_checksum(folder: Path) -> None:
    card = ModelCard.read(folder)
    card.model_copy(update={"sha256": sha256_file(folder / "model.onnx")}).write(folder)


def test_a_graph_without_its_catalogue_is_refused(small_model_dir: Path, tmp_path: Path) -> None:
    # GIVEN the version's graph with its metadata removed (checksum updated to match)
    folder = Path(shutil.copytree(small_model_dir, tmp_path / "v"))
    graph = onnx.load(folder / "model.onnx")
    del graph.metadata_props[:]
    onnx.save(graph, folder / "model.onnx")
    _refresh_checksum(folder)
    # THEN loading it says what is missing and how to get a good one
    with pytest.raises(
        ModelLoadError, match=r"lacks metadata aib\.recommend\.item_ids.*aib train recommendations"
    ):
        load_recommender_dir(folder)


def test_a_card_of_another_task_is_refused(small_model_dir: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(small_model_dir, tmp_path / "v"))
    card = ModelCard.read(folder)
    card.model_copy(update={"task": "binary_classification"}).write(folder)
    with pytest.raises(ModelLoadError, match="a recommender is a 'ranking' model"):
        load_recommender_dir(folder)


def test_the_graph_runs_single_threaded(model: Recommender) -> None:
    assert model.session.get_session_options().intra_op_num_threads == 1
    scores, items = model.run(np.zeros((2, model.items), np.float32))
    assert scores.shape == items.shape == (2, model.top_k)
