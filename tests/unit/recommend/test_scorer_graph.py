"""The ONNX scoring graph against its numpy reference: same scores, same items, seen items
masked, popularity for empty histories."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from aibackend.recommend.graph import INPUT, OUTPUTS, build_graph
from aibackend.recommend.scorer import ItemScorer

ITEMS, FACTORS, TOP_K = 300, 16, 20


@pytest.fixture(scope="module")
def scorer() -> ItemScorer:
    rng = np.random.default_rng(11)
    weights = rng.pareto(1.5, size=ITEMS) + 1.0
    return ItemScorer(
        fold=rng.normal(size=(ITEMS, FACTORS)).astype(np.float32),
        embeddings=rng.normal(size=(ITEMS, FACTORS)).astype(np.float32),
        popularity=(weights / weights.sum()).astype(np.float32),
        top_k=TOP_K,
    )


@pytest.fixture(scope="module")
def session(scorer: ItemScorer) -> ort.InferenceSession:
    model = build_graph(scorer, {"note": "kept"})
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _histories(scorer: ItemScorer) -> np.ndarray:
    rng = np.random.default_rng(5)
    rows = [rng.choice(ITEMS, size=n, replace=False) for n in (1, 3, 10, 40, 150)]
    rows.append(np.empty(0, dtype=np.int64))  # an unknown user / empty session
    rows.append(np.arange(ITEMS - 5))  # everything seen but five items
    return scorer.histories(rows)


def test_onnx_ranks_exactly_as_numpy(scorer: ItemScorer, session: ort.InferenceSession) -> None:
    # GIVEN histories of every size, an empty one and one that has seen almost everything
    h = _histories(scorer)
    # WHEN the graph and the numpy reference rank them
    got_scores, got_items = session.run(list(OUTPUTS), {INPUT: h})
    want_scores, want_items = scorer.rank(h)
    # THEN they pick the same items in the same order, with the same scores
    np.testing.assert_array_equal(got_items, want_items)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-5)
    assert got_scores.shape == got_items.shape == (len(h), TOP_K)
    # AND the numpy affinity is the user vector times the item embeddings
    np.testing.assert_allclose(
        scorer.affinity(h[:1]), (h[:1] @ scorer.fold) @ scorer.embeddings.T, rtol=1e-6
    )


def test_seen_items_are_never_recommended(
    scorer: ItemScorer, session: ort.InferenceSession
) -> None:
    h = _histories(scorer)
    scores, items = session.run(list(OUTPUTS), {INPUT: h})
    for row, (s, top) in enumerate(zip(scores, items, strict=True)):
        seen = set(np.flatnonzero(h[row]).tolist())
        assert not seen & set(top[np.isfinite(s)].tolist())
    # AND with only five unseen items left, those five come first and the rest are masked
    assert set(items[-1][:5].tolist()) == set(range(ITEMS - 5, ITEMS))
    assert np.isneginf(scores[-1][5:]).all()


def test_an_empty_history_gets_items_by_popularity(
    scorer: ItemScorer, session: ort.InferenceSession
) -> None:
    scores, items = session.run(list(OUTPUTS), {INPUT: np.zeros((1, ITEMS), np.float32)})
    order = np.argsort(-scorer.popularity, kind="stable")[:TOP_K]
    np.testing.assert_array_equal(items[0], order)
    np.testing.assert_allclose(scores[0], scorer.popularity[order])


def test_ties_go_to_the_lower_item_index_in_both(scorer: ItemScorer) -> None:
    # GIVEN a popularity where every item ties
    flat = ItemScorer(scorer.fold, scorer.embeddings, np.full(ITEMS, 1 / ITEMS, np.float32), 5)
    sess = ort.InferenceSession(build_graph(flat).SerializeToString())
    _, items = sess.run(list(OUTPUTS), {INPUT: np.zeros((1, ITEMS), np.float32)})
    assert items[0].tolist() == flat.rank(np.zeros((1, ITEMS)))[1][0].tolist() == [0, 1, 2, 3, 4]


def test_metadata_rides_in_the_graph(session: ort.InferenceSession) -> None:
    assert session.get_modelmeta().custom_metadata_map["note"] == "kept"


def test_inconsistent_shapes_are_refused(scorer: ItemScorer) -> None:
    with pytest.raises(ValueError, match="disagree on the number of items or factors"):
        ItemScorer(scorer.fold, scorer.embeddings[:, :3], scorer.popularity, 5)
    with pytest.raises(ValueError, match=r"top_k must be in \[1, 300\]"):
        ItemScorer(scorer.fold, scorer.embeddings, scorer.popularity, 301)
    with pytest.raises(ValueError, match=r"expected a \(rows, 300\) history matrix"):
        scorer.scores(np.zeros((1, 7)))
