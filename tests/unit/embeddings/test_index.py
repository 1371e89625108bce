"""Vector indexes: cosine top-k, saved and read back without pickle, checked on load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aibackend.embeddings.index import build_index, load_index
from aibackend.errors import ModelLoadError


def unit(*rows: list[float]) -> np.ndarray:
    m = np.array(rows, dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


INDEX = build_index(
    "products",
    ["p-1", "p-2", "p-3"],
    unit([1, 0], [0.6, 0.8], [0, 1]),
    [{"name": "east"}, {"name": "north-east"}, {"name": "north"}],
)


def test_search_ranks_by_cosine_best_first() -> None:
    (matches,) = INDEX.search(unit([1, 0.1]), top_k=2)
    assert [m.id for m in matches] == ["p-1", "p-2"]
    assert matches[0].score == pytest.approx(1 / np.sqrt(1.01), rel=1e-5)
    assert matches[0].document == {"name": "east"}


def test_top_k_past_the_collection_returns_everything() -> None:
    (matches,) = INDEX.search(unit([0, 1]), top_k=10)
    assert [m.id for m in matches] == ["p-3", "p-2", "p-1"]


def test_an_index_survives_a_round_trip(tmp_path: Path) -> None:
    path = INDEX.save(tmp_path / "indexes" / "products.npz")
    loaded = load_index(path, dimension=2)
    assert loaded.ids == INDEX.ids and loaded.documents == INDEX.documents
    np.testing.assert_array_equal(loaded.vectors, INDEX.vectors)


def test_loading_checks_the_dimension_and_the_format(tmp_path: Path) -> None:
    path = INDEX.save(tmp_path / "products.npz")
    with pytest.raises(ModelLoadError, match=r"do not fit a 384-dimension model"):
        load_index(path, dimension=384)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match="rebuild"):
        load_index(tmp_path / "junk.npz", dimension=2)


def test_ids_documents_and_vectors_must_line_up() -> None:
    with pytest.raises(ValueError, match="as many"):
        build_index("x", ["a"], unit([1, 0], [0, 1]), [{}])
    with pytest.raises(ValueError, match="unique"):
        build_index("x", ["a", "a"], unit([1, 0], [0, 1]), [{}, {}])
