"""Retrieval quality of product search: semantic (embeddings) next to a BM25 keyword baseline.

Each evaluation query names the categories whose products answer it; a product is relevant
when its category is one of them (binary relevance). Metrics at k = 10, averaged over
queries: nDCG, MRR (reciprocal rank of the first relevant product, 0 past k) and precision.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

K = 10
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lowercased alphanumeric runs (what a simple keyword index matches on)."""
    return _WORD.findall(text.lower())


class BM25:
    """Okapi BM25 over a fixed collection (k1 = 1.2, b = 0.75, Lucene's IDF)."""

    def __init__(self, documents: Sequence[str], *, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs = [Counter(words(d)) for d in documents]
        self.lengths = np.array([sum(c.values()) for c in self.docs], dtype=np.float64)
        self.avg_length = float(self.lengths.mean()) if len(self.docs) else 0.0
        df: Counter[str] = Counter()
        for c in self.docs:
            df.update(c.keys())
        n = len(self.docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: str) -> np.ndarray:
        out = np.zeros(len(self.docs), dtype=np.float64)
        norm = self.k1 * (1 - self.b + self.b * self.lengths / max(self.avg_length, 1e-9))
        for term in set(words(query)):
            idf = self.idf.get(term)
            if idf is None:
                continue
            tf = np.array([c.get(term, 0) for c in self.docs], dtype=np.float64)
            out += idf * tf * (self.k1 + 1) / (tf + norm)
        return out


def ranking(scores: np.ndarray) -> np.ndarray:
    """Document positions, best first; ties keep collection order (stable)."""
    return np.argsort(-scores, kind="stable")


def ndcg_at_k(relevant: np.ndarray, order: np.ndarray, k: int = K) -> float:
    """Binary-relevance nDCG of the first `k` of `order`; `relevant` is a boolean per document."""
    gains = relevant[order[:k]].astype(np.float64)
    discounts = 1 / np.log2(np.arange(2, len(gains) + 2))
    ideal = np.sort(relevant.astype(np.float64))[::-1][:k]
    best = float((ideal * discounts[: len(ideal)]).sum())
    return float((gains * discounts).sum()) / best if best > 0 else 0.0


def mrr_at_k(relevant: np.ndarray, order: np.ndarray, k: int = K) -> float:
    hits = np.flatnonzero(relevant[order[:k]])
    return 1.0 / (hits[0] + 1) if hits.size else 0.0


def precision_at_k(relevant: np.ndarray, order: np.ndarray, k: int = K) -> float:
    return float(relevant[order[:k]].sum()) / k


def retrieval_metrics(
    score_rows: Sequence[np.ndarray], relevant_rows: Sequence[np.ndarray], k: int = K
) -> dict[str, float]:
    """Mean nDCG@k, MRR@k and precision@k over queries (one score and relevance row each)."""
    orders = [ranking(s) for s in score_rows]
    pairs = list(zip(relevant_rows, orders, strict=True))
    return {
        f"ndcg_at_{k}": float(np.mean([ndcg_at_k(r, o, k) for r, o in pairs])),
        f"mrr_at_{k}": float(np.mean([mrr_at_k(r, o, k) for r, o in pairs])),
        f"precision_at_{k}": float(np.mean([precision_at_k(r, o, k) for r, o in pairs])),
        "queries": float(len(pairs)),
    }
