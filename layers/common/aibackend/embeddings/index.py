"""A document collection embedded at build time, searched by cosine similarity.

An index file (`indexes/<name>.npz`, numpy's zip format, read without pickle) holds `ids`,
unit-length `vectors` (float32) and `documents` (a JSON list, one object per id). A few
thousand documents need no approximate search: one matrix product scores them all in well
under a millisecond.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aibackend.embeddings.contract import Match
from aibackend.errors import ModelLoadError


@dataclass(frozen=True)
class VectorIndex:
    name: str
    ids: tuple[str, ...]
    #: (n, dimension) float32, unit rows.
    vectors: np.ndarray
    documents: tuple[Mapping[str, Any], ...]

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1])

    def search(self, queries: np.ndarray, top_k: int) -> list[list[Match]]:
        """The `top_k` most similar documents of each query row, best first."""
        scores = queries @ self.vectors.T
        k = min(top_k, len(self.ids))
        out: list[list[Match]] = []
        for row in scores:
            top = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
            best = top[np.argsort(-row[top], kind="stable")]
            out.append(
                [
                    Match(id=self.ids[i], score=float(row[i]), document=dict(self.documents[i]))
                    for i in best
                ]
            )
        return out

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez(
                f,
                ids=np.array(self.ids, dtype=np.str_),
                vectors=self.vectors.astype(np.float32),
                documents=np.array(json.dumps(list(self.documents), separators=(",", ":"))),
            )
        return path


def build_index(
    name: str, ids: Sequence[str], vectors: np.ndarray, documents: Sequence[Mapping[str, Any]]
) -> VectorIndex:
    if not (len(ids) == len(documents) == vectors.shape[0]):
        raise ValueError(
            f"index {name!r}: {len(ids)} ids, {len(documents)} documents and "
            f"{vectors.shape[0]} vectors must be as many"
        )
    if len(set(ids)) != len(ids):
        raise ValueError(f"index {name!r}: ids must be unique")
    matrix = np.ascontiguousarray(vectors, np.float32)
    return VectorIndex(name, tuple(ids), matrix, tuple(documents))


def load_index(path: Path, *, dimension: int) -> VectorIndex:
    """Read an index file; its vectors must have the model's `dimension`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            ids = tuple(str(x) for x in data["ids"])
            vectors = np.ascontiguousarray(data["vectors"], dtype=np.float32)
            documents = tuple(json.loads(str(data["documents"])))
    except (OSError, KeyError, ValueError) as e:
        raise ModelLoadError(
            f"{path}: not a readable index ({e}); rebuild it with `aib build embeddings`"
        ) from e
    if vectors.ndim != 2 or vectors.shape != (len(ids), dimension) or len(documents) != len(ids):
        raise ModelLoadError(
            f"{path}: {len(ids)} ids, {len(documents)} documents and vectors of shape "
            f"{vectors.shape} do not fit a {dimension}-dimension model; rebuild it"
        )
    return VectorIndex(path.stem, ids, vectors, documents)
