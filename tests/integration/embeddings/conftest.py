"""A state folder with the tiny embeddings model registered (built once per module)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tokenizers", reason="the embeddings server tokenizes with `tokenizers`")

from tests.integration.embeddings.tiny_model import register_tiny_embeddings


@pytest.fixture(scope="module")
def embeddings_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder whose production `embeddings` is the tiny model (never modified: copy
    it with `running_runtime(..., seed_state=...)`)."""
    state = tmp_path_factory.mktemp("embeddings-state")
    register_tiny_embeddings(state)
    return state


@pytest.fixture(scope="module")
def tiny_model_dir(embeddings_state: Path) -> Path:
    return embeddings_state / "buckets" / "models" / "embeddings" / "1"
