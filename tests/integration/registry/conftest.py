"""A fraud registry trained once per module: v1, on generated data, through the gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from aibackend.settings import PlatformSettings
from aibackend.training.local import train_local

#: Few rows keep training to seconds; the holdout (4,000 rows, ~40 fraud) still separates a
#: model that learned from one that did not.
ROWS = 20_000


@pytest.fixture(scope="module")
def fraud_registry_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GIVEN a state folder whose fraud v1 was trained, passed the gate and is production."""
    state = tmp_path_factory.mktemp("registry") / "state"
    mv = train_local("fraud", PlatformSettings(state_dir=state), rows=ROWS, echo=lambda _: None)
    assert (mv.version, mv.stage, mv.approval.status) == (1, "production", "approved")
    return state


def training_data(state: Path, version: int = 1) -> Path:
    """The CSV version `version` was trained on (its run folder's training channel)."""
    runs = sorted((state / "training").glob("fraud-*"))
    return runs[version - 1] / "input" / "data" / "train" / "transactions.csv"
