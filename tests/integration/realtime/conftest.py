"""Fixtures of the real-time tests: a state with a trained fraud model, and a functions folder
with the consumers the simulated streams need (fraud_events, alerts)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aibackend.settings import PlatformSettings
from aibackend.training.local import train_local
from tests.support import FUNCTIONS


@pytest.fixture(scope="module")
def realtime_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder with a production fraud model (50k rows: seconds, enough to score)."""
    state = tmp_path_factory.mktemp("realtime-seed") / "state"
    train_local("fraud", PlatformSettings(state_dir=state), rows=50_000, echo=lambda _l: None)
    return state


@pytest.fixture(scope="module")
def realtime_functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("realtime-functions") / "functions"
    for name in ("fraud_events", "alerts"):
        shutil.copytree(FUNCTIONS / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


#: Readings per IoT model in the tests (10 devices each): ~8 s a model, mostly the training
#: subprocess starting (scikit-learn, skl2onnx imports).
IOT_ROWS = 3_000


@pytest.fixture(scope="module")
def iot_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder with a production anomaly model per device type."""
    from aibackend.iot.devices import DEVICE_TYPES

    state = tmp_path_factory.mktemp("iot-seed") / "state"
    for device_type in DEVICE_TYPES:
        train_local(
            f"iot_{device_type}",
            PlatformSettings(state_dir=state),
            rows=IOT_ROWS,
            echo=lambda _l: None,
        )
    return state


@pytest.fixture(scope="module")
def iot_functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("iot-functions") / "functions"
    for name in ("iot_anomaly", "alerts"):
        shutil.copytree(FUNCTIONS / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture(scope="module")
def shop_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder with a production recommendations model (the default data: ~5 s)."""
    state = tmp_path_factory.mktemp("shop-seed") / "state"
    train_local("recommendations", PlatformSettings(state_dir=state), echo=lambda _l: None)
    return state


@pytest.fixture(scope="module")
def shop_functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shop-functions") / "functions"
    for name in ("shop_events", "recommendations"):
        shutil.copytree(FUNCTIONS / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root
