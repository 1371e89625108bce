"""A trained sentiment model, and a functions folder that serves only the sentiment function."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import FUNCTIONS


@pytest.fixture(scope="session")
def sentiment_state(project_state: Path) -> Path:
    """A state folder whose production sentiment model is trained on the whole corpus: the
    session's (read only; runtimes copy it)."""
    return project_state


@pytest.fixture(scope="session")
def sentiment_functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`functions/` with only `sentiment` in it: the runtime then needs no other model."""
    root = tmp_path_factory.mktemp("functions")
    (root / "sentiment").symlink_to(FUNCTIONS / "sentiment", target_is_directory=True)
    return root
