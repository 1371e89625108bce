"""A trained sentiment model, and a functions folder that serves only the sentiment function."""

from __future__ import annotations

from pathlib import Path

import pytest

from aibackend.settings import PlatformSettings
from aibackend.training.local import train_local
from tests.support import FUNCTIONS


@pytest.fixture(scope="session")
def sentiment_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder whose production sentiment model is trained on the whole corpus (~4 s)."""
    state = tmp_path_factory.mktemp("sentiment-state")
    train_local("sentiment", PlatformSettings(state_dir=state), echo=lambda _line: None)
    return state


@pytest.fixture(scope="session")
def sentiment_functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`functions/` with only `sentiment` in it: the runtime then needs no other model."""
    root = tmp_path_factory.mktemp("functions")
    (root / "sentiment").symlink_to(FUNCTIONS / "sentiment", target_is_directory=True)
    return root
