"""The scoring every path shares, in numpy: the reference the ONNX graph (`graph.py`) must match.

A request is a *history* row: one column per catalogue item, 1 where the user (or an anonymous
session) interacted with it, else 0. Then

    user vector  u = history @ fold                      (items -> factors)
    affinity     a = u @ embeddings.T                    (factors -> items)
    seen items   a[history > 0] = -inf                   (never recommend them again)
    no history   a = popularity                          (the fallback: unknown user, no items)
    answer       top `top_k` of a, best first; ties go to the lower item index

`fold` and `embeddings` come from a truncated SVD of the popularity-normalized interaction
matrix (see `aibackend.training.recommendations`); a known user's vector and an anonymous
session's are computed the same way, from the items they touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Score of an item the history already holds (never among the results).
MASKED = -np.inf


@dataclass(frozen=True)
class ItemScorer:
    #: (items, factors) float32: maps a history row to a user vector.
    fold: np.ndarray
    #: (items, factors) float32: each item's embedding.
    embeddings: np.ndarray
    #: (items,) float32: share of all interactions per item (sums to 1).
    popularity: np.ndarray
    #: Length of every ranked answer (at most the catalogue size).
    top_k: int

    def __post_init__(self) -> None:
        n, d = self.fold.shape
        if self.embeddings.shape != (n, d) or self.popularity.shape != (n,):
            raise ValueError(
                f"fold {self.fold.shape}, embeddings {self.embeddings.shape} and popularity "
                f"{self.popularity.shape} disagree on the number of items or factors"
            )
        if not 1 <= self.top_k <= n:
            raise ValueError(f"top_k must be in [1, {n}] (the catalogue size), got {self.top_k}")

    @property
    def items(self) -> int:
        return int(self.fold.shape[0])

    @property
    def factors(self) -> int:
        return int(self.fold.shape[1])

    def user_vectors(self, history: np.ndarray) -> np.ndarray:
        out: np.ndarray = history.astype(np.float32, copy=False) @ self.fold
        return out

    def affinity(self, history: np.ndarray) -> np.ndarray:
        """Unmasked personalized scores, shape (rows, items)."""
        out: np.ndarray = self.user_vectors(history) @ self.embeddings.T
        return out

    def scores(self, history: np.ndarray) -> np.ndarray:
        """Masked scores, or the popularity row where a history is empty (rows, items)."""
        h = np.asarray(history, dtype=np.float32)
        if h.ndim != 2 or h.shape[1] != self.items:
            raise ValueError(f"expected a (rows, {self.items}) history matrix, got {h.shape}")
        a = np.where(h > 0, np.float32(MASKED), self.affinity(h))
        empty = h.sum(axis=1) <= 0
        a[empty] = self.popularity
        return a

    def rank(self, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, item indices), each (rows, top_k), best first."""
        s = self.scores(history)
        order = np.argsort(-s, axis=1, kind="stable")[:, : self.top_k]
        return np.take_along_axis(s, order, axis=1), order

    def histories(self, rows: list[np.ndarray]) -> np.ndarray:
        """A history matrix from lists of item indices (one list per row)."""
        h = np.zeros((len(rows), self.items), dtype=np.float32)
        for i, items in enumerate(rows):
            h[i, items] = 1.0
        return h
