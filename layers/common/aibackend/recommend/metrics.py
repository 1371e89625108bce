"""Top-k ranking metrics, per user and averaged over users (numpy only).

Each user has a ranked list of recommended item indices and a set of relevant items (what
they went on to interact with). With `hits@k` the relevant items among the first `k`:

- precision@k = hits@k / k
- recall@k = hits@k / |relevant|
- NDCG@k = DCG@k / IDCG@k, DCG@k = sum over ranks r <= k of rel_r / log2(r + 1) (binary
  relevance), IDCG@k the DCG of a perfect list: min(|relevant|, k) hits at the top.

Users without relevant items are skipped (their metrics are undefined); the averages weigh
every remaining user the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RankingMetrics:
    """Mean precision, recall and NDCG at `k` over `users` users."""

    k: int
    precision: float
    recall: float
    ndcg: float
    users: int

    def as_dict(self) -> dict[str, float]:
        """`{"precision_at_10": ..., "recall_at_10": ..., "ndcg_at_10": ..., "users": ...}`."""
        return {
            f"precision_at_{self.k}": self.precision,
            f"recall_at_{self.k}": self.recall,
            f"ndcg_at_{self.k}": self.ndcg,
            "users": float(self.users),
        }


def discounts(k: int) -> np.ndarray:
    """1 / log2(rank + 1) for ranks 1..k."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def hits(ranked: np.ndarray, relevant: np.ndarray, k: int) -> np.ndarray:
    """Boolean (k,) array: is the item at each of the first `k` ranks relevant?

    `ranked` may be shorter than `k` (a catalogue smaller than k, or items masked out): the
    missing ranks count as misses.
    """
    out = np.zeros(k, dtype=bool)
    top = np.asarray(ranked)[:k]
    out[: top.size] = np.isin(top, relevant)
    return out


def user_metrics(ranked: np.ndarray, relevant: np.ndarray, k: int) -> tuple[float, float, float]:
    """(precision@k, recall@k, NDCG@k) of one ranked list; `relevant` must not be empty."""
    rel = np.unique(np.asarray(relevant))
    if rel.size == 0:
        raise ValueError("no relevant items: the metrics of this user are undefined")
    h = hits(ranked, rel, k)
    disc = discounts(k)
    n_hits = int(h.sum())
    ideal = float(disc[: min(rel.size, k)].sum())
    return n_hits / k, n_hits / rel.size, float((h * disc).sum()) / ideal


def ranking_metrics(
    ranked: Sequence[np.ndarray] | np.ndarray, relevant: Sequence[np.ndarray], k: int
) -> RankingMetrics:
    """Mean precision@k, recall@k and NDCG@k over users (rows of `ranked`, items of `relevant`)."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if len(ranked) != len(relevant):
        raise ValueError(f"{len(ranked)} ranked lists for {len(relevant)} relevant sets")
    scores = [user_metrics(r, rel, k) for r, rel in zip(ranked, relevant, strict=True) if len(rel)]
    if not scores:
        return RankingMetrics(k=k, precision=0.0, recall=0.0, ndcg=0.0, users=0)
    p, r, n = (float(np.mean(col)) for col in zip(*scores, strict=True))
    return RankingMetrics(k=k, precision=p, recall=r, ndcg=n, users=len(scores))
