"""Fixtures shared by every test layer: sample events and tiny model artifacts; how the suite
runs in parallel (pytest-xdist, `make test`)."""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aibackend.models.card import (
    Baseline,
    Feature,
    ModelCard,
    NumericStats,
    TensorSpec,
    TrainingData,
    sha256_file,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EVENTS = ROOT / "events"


def load_event(name: str) -> dict[str, Any]:
    """`events/<source>/<case>.json`, e.g. `load_event("apigw/fraud_score_single")`."""
    data: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
    return copy.deepcopy(data)


@pytest.fixture
def event() -> Callable[[str], dict[str, Any]]:
    return load_event


def build_tiny_model(
    folder: Path, *, name: str = "tiny", weights: tuple[float, ...] = (1.0, -2.0)
) -> Path:
    """A logistic-regression-shaped ONNX graph, `p = sigmoid(x @ w)`, as a full artifact folder."""
    import onnx
    from onnx import TensorProto, helper

    k = len(weights)
    w = helper.make_tensor("w", TensorProto.FLOAT, [k, 1], list(weights))
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node("MatMul", ["features", "w"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["p1"]),
        helper.make_node("Sub", ["one", "p1"], ["p0"]),
        helper.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, k])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2]),
        ],
        initializer=[w, one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    feats = tuple(Feature(name=f"x{i}", kind="numeric") for i in range(k))
    ModelCard(
        name=name,
        task="binary_classification",
        created_at=datetime.now(UTC),
        sha256=sha256_file(folder / "model.onnx"),
        features=feats,
        inputs=(TensorSpec(name="features", dtype="float32", shape=(None, k)),),
        outputs=(
            TensorSpec(name="label", dtype="int64", shape=(None,)),
            TensorSpec(name="probabilities", dtype="float32", shape=(None, 2)),
        ),
        classes=("neg", "pos"),
        metrics={"roc_auc": 0.5},
        training_data=TrainingData(fingerprint="0" * 64, rows=10, source="test"),
        code_version="test",
    ).write(folder)
    stats = NumericStats(
        count=10, mean=0, std=1, min=-1, max=1, quantiles=tuple(np.linspace(-1, 1, 11))
    )
    Baseline(rows=10, features={f.name: stats for f in feats}).write(folder)
    return folder


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    return build_tiny_model(tmp_path / "artifact")


@pytest.fixture
def tiny_model_factory() -> Callable[..., Path]:
    return build_tiny_model


#: Rows per model when the suite trains it (fewer than `aib dev` uses where that keeps the
#: metrics the tests check); a model not listed trains on its default.
#: Rows per model for the session's trained state (`None`: the model's default). The IoT
#: detectors learn normal readings; 3,000 a type is plenty for the tests and trains in ~3 s.
TEST_ROWS = {
    "fraud": 200_000,
    "iot_thermostat": 3_000,
    "iot_vibration": 3_000,
    "iot_pressure": 3_000,
}


def built_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]
) -> Path:
    """The folder `name`, filled by `build` once for the whole run. Under pytest-xdist each
    worker is a process with its own session fixtures: the first to ask builds the folder in
    the run's shared temporary folder, the others wait on a file lock and reuse it. Read only
    for its users (they copy it)."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # <run>/popen-gw0 -> <run>, which every worker of this run shares
    folder, built = root / name, root / f"{name}.built"
    with FileLock(root / f"{name}.lock"):
        if not built.exists():
            folder.mkdir()  # a worker that died mid-build leaves it: the run fails, loudly
            build(folder)
            built.touch()
    return folder


def _train_project_models(state: Path) -> None:
    from aibackend.catalog import load_catalog
    from aibackend.settings import PlatformSettings
    from aibackend.training.local import TRAINABLE, train_local

    settings = PlatformSettings(state_dir=state)
    for name in load_catalog(ROOT / "functions").model_names:
        if name in TRAINABLE:
            train_local(name, settings, rows=TEST_ROWS.get(name), echo=lambda _line: None)


@pytest.fixture(scope="session")
def project_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder in which every model the project's functions declare has a production
    version (trained once a run, whatever the number of workers), as `aib dev` makes on first
    start."""
    return built_once(tmp_path_factory, "project-state", _train_project_models)


@pytest.fixture(scope="session")
def fraud_state(project_state: Path) -> Path:
    """The project state (it holds the trained fraud model, and every other one)."""
    return project_state


@pytest.fixture(autouse=True)
def _fresh_aws_clients() -> Iterator[None]:
    """The AWS adapters cache one boto3 client per service and process, and a client keeps the
    credentials and region of the environment it was made in. Forgotten after each test, so no
    test depends on which test ran before it in its process (moto's keys, a region)."""
    yield
    for module in ("aibackend.adapters.aws", "aibackend.adapters.eventbridge"):
        if (loaded := sys.modules.get(module)) is not None:
            loaded._client.cache_clear()


def _scope_of(nodeid: str) -> str:
    """A test's unit of work under pytest-xdist: the folder, when the folder has its own
    conftest.py (its session fixtures, a synthesized app or a trained model, are then built by
    one worker only), else the test file."""
    path = ROOT / nodeid.split("::", 1)[0]
    folder = path.parent
    own_conftest = folder != HERE and (folder / "conftest.py").is_file()
    return (folder if own_conftest else path).relative_to(ROOT).as_posix()


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: unknown when it is not loaded
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadscope` (`make test`) with `_scope_of`'s units instead of modules, and a run
    that ends when a worker dies (tests/scheduling.py). (The `xdist_group` mark cannot express
    the units: pytest 9.2's node ids drop the group xdist appends, pytest-xdist#1386.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from tests.scheduling import FolderScheduling

    return FolderScheduling(config, log, _scope_of)
