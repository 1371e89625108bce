"""Retrieval metrics against hand-computed values, and the BM25 baseline's basic behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aibackend.embeddings.evaluation import (
    BM25,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    retrieval_metrics,
)

# Five documents; relevant: 1 and 3. Ranking: 0, 1, 2, 3, 4.
RELEVANT = np.array([False, True, False, True, False])
ORDER = np.arange(5)


def test_ndcg_by_hand() -> None:
    dcg = 1 / math.log2(3) + 1 / math.log2(5)  # hits at ranks 2 and 4
    ideal = 1 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(RELEVANT, ORDER, k=5) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(RELEVANT, np.array([1, 3, 0, 2, 4]), k=5) == pytest.approx(1.0)
    assert ndcg_at_k(np.zeros(5, bool), ORDER, k=5) == 0.0


def test_mrr_and_precision_by_hand() -> None:
    assert mrr_at_k(RELEVANT, ORDER, k=5) == 0.5
    assert mrr_at_k(RELEVANT, ORDER, k=1) == 0.0
    assert precision_at_k(RELEVANT, ORDER, k=4) == 0.5


def test_metrics_average_over_queries() -> None:
    perfect = np.array([0.0, 1.0, 0.0, 0.9, 0.0])
    m = retrieval_metrics([perfect, -perfect], [RELEVANT, RELEVANT], k=2)
    # query 1 ranks both relevant first; query 2 ranks them last
    assert m["precision_at_2"] == pytest.approx(0.5)
    assert m["mrr_at_2"] == pytest.approx(0.5)
    assert m["queries"] == 2


def test_bm25_scores_documents_sharing_rare_query_words_higher() -> None:
    bm25 = BM25(["insulated travel mug", "travel backpack", "yoga mat for travel"])
    scores = bm25.scores("Travel MUG")
    assert np.argmax(scores) == 0
    assert scores[1] > 0  # "travel" alone still counts, a little
    assert bm25.scores("espresso").tolist() == [0.0, 0.0, 0.0]
