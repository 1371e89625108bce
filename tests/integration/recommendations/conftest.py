"""The recommendations function alone in a local runtime, with a model trained on the
default generated data (once a session)."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from aibackend.catalog import DECLARATION
from aibackend.local.runtime import LocalRuntime
from tests.support import FUNCTIONS, running_runtime


@pytest.fixture(scope="session")
def recommendations_functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A functions folder with only `recommendations` (a link to the real one) and the
    project's plans: these tests need neither the other functions nor their models."""
    root = tmp_path_factory.mktemp("functions")
    (root / "recommendations").symlink_to(FUNCTIONS / "recommendations", target_is_directory=True)
    assert (root / "recommendations" / DECLARATION).is_file()
    plans = FUNCTIONS / "plans.toml"
    if plans.is_file():
        shutil.copy(plans, root / plans.name)
    return root


@pytest.fixture(scope="session")
def recommendations_state(project_state: Path) -> Path:
    """A state with the recommendations model trained on the default data: the session's
    (read only; runtimes copy it)."""
    return project_state


@pytest.fixture(scope="session")
def interactions(recommendations_state: Path) -> list[tuple[str, str]]:
    """(user_id, item_id) rows of the generated data the model was trained on."""
    [path] = recommendations_state.glob("training/recommendations-*/input/data/train/*.csv")
    with path.open() as f:
        return [(row["user_id"], row["item_id"]) for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def runtime(
    recommendations_functions: Path,
    recommendations_state: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalRuntime]:
    # HTTP only: these tests need the gateway and the function behind it.
    state = tmp_path_factory.mktemp("rec-svc") / "state"
    with running_runtime(
        recommendations_functions, state, seed_state=recommendations_state, sources=False
    ) as rt:
        yield rt
