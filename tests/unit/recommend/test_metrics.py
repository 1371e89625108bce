"""Ranking metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aibackend.recommend.metrics import ranking_metrics, user_metrics

LOG2_3 = math.log2(3)


def test_one_user_with_a_hit_at_rank_two() -> None:
    # GIVEN items 3, 1, 7, 9 ranked for a user who went on to take 1, 9 and 5
    p, r, ndcg = user_metrics(np.array([3, 1, 7, 9]), np.array([1, 9, 5]), k=3)
    # THEN at k=3: one hit (item 1, rank 2); item 9 is at rank 4, past the cut-off
    assert p == pytest.approx(1 / 3)
    assert r == pytest.approx(1 / 3)
    # DCG = 1/log2(3); ideal: three hits at ranks 1-3 = 1 + 1/log2(3) + 1/2
    assert ndcg == pytest.approx((1 / LOG2_3) / (1 + 1 / LOG2_3 + 0.5))
    assert ndcg == pytest.approx(0.29608, abs=1e-5)


def test_a_perfect_list_scores_one_and_a_short_list_counts_missing_ranks_as_misses() -> None:
    # GIVEN one relevant item, ranked first, in a list shorter than k
    p, r, ndcg = user_metrics(np.array([5]), np.array([5]), k=3)
    # THEN recall and NDCG are 1 (the ideal list holds one hit), precision is 1/k
    assert (p, r, ndcg) == (pytest.approx(1 / 3), 1.0, pytest.approx(1.0))


def test_a_list_without_hits_scores_zero() -> None:
    assert user_metrics(np.array([1, 2, 3]), np.array([4]), k=3) == (0.0, 0.0, 0.0)


def test_means_weigh_users_equally_and_skip_users_without_relevant_items() -> None:
    # GIVEN the two users above and one with nothing held out
    ranked = [np.array([3, 1, 7, 9]), np.array([5]), np.array([8])]
    relevant = [np.array([1, 9, 5]), np.array([5]), np.array([], dtype=np.int64)]
    m = ranking_metrics(ranked, relevant, k=3)
    # THEN the averages are over the two users with relevant items
    assert m.users == 2
    assert m.precision == pytest.approx(1 / 3)
    assert m.recall == pytest.approx((1 / 3 + 1) / 2)
    assert m.ndcg == pytest.approx((0.29608 + 1) / 2, abs=1e-5)
    assert m.as_dict() == {
        "precision_at_3": m.precision,
        "recall_at_3": m.recall,
        "ndcg_at_3": m.ndcg,
        "users": 2.0,
    }


def test_duplicate_relevant_items_count_once() -> None:
    assert user_metrics(np.array([1, 2]), np.array([1, 1]), k=2)[1] == 1.0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="k must be positive"):
        ranking_metrics([np.array([1])], [np.array([1])], k=0)
    with pytest.raises(ValueError, match="2 ranked lists for 1 relevant"):
        ranking_metrics([np.array([1]), np.array([2])], [np.array([1])], k=1)
    with pytest.raises(ValueError, match="no relevant items"):
        user_metrics(np.array([1]), np.array([], dtype=np.int64), k=1)
