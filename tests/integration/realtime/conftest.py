"""Fixtures of the real-time tests: a state with a trained fraud model, and a functions folder
with the consumers the simulated streams need (fraud_events, alerts)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import FUNCTIONS


@pytest.fixture(scope="module")
def realtime_state(project_state: Path) -> Path:
    """A seed state with a production fraud model: the session's (tests copy it, never write)."""
    return project_state


@pytest.fixture(scope="module")
def realtime_functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("realtime-functions") / "functions"
    for name in ("fraud_events", "alerts"):
        shutil.copytree(FUNCTIONS / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture(scope="module")
def iot_state(project_state: Path) -> Path:
    """A seed state with a production anomaly model per device type: the session's."""
    return project_state


@pytest.fixture(scope="module")
def iot_functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("iot-functions") / "functions"
    for name in ("iot_anomaly", "alerts"):
        shutil.copytree(FUNCTIONS / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture(scope="module")
def shop_state(project_state: Path) -> Path:
    """A seed state with a production recommendations model: the session's."""
    return project_state


@pytest.fixture(scope="module")
def shop_functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shop-functions") / "functions"
    for name in ("shop_events", "recommendations"):
        shutil.copytree(FUNCTIONS / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root
