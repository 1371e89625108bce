"""The pipeline's functions under `aib dev`'s local runtime, with test-sized queue settings."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from aibackend.adapters.local_queue import SqliteQueueService
from aibackend.local import triggers
from aibackend.local.runtime import LocalRuntime
from aibackend.settings import PlatformSettings
from aibackend.training.local import train_local
from tests.support import FUNCTIONS, running_runtime

#: Rows per chunk (the declared default): 1,000 generator rows are over SQS's 256 KiB, so
#: every chunk travels by claim check.
CHUNK_SIZE = 1000
#: The store stage gives up after this many receives; its messages reappear after 2 s, so an
#: injected failure reaches the DLQ in seconds rather than after 3 x 6 x 60 s.
STORE_MAX_RECEIVES = 2


def _patch(toml: Path, **values: str) -> None:
    text = toml.read_text()
    for key, value in values.items():
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert n == 1, f"{toml}: no single `{key} = ...` line to patch"
    toml.write_text(text)


#: Training rows of the score stage's fraud model: enough for a real model in about 3 s.
FRAUD_ROWS = 20_000


@pytest.fixture(scope="session")
def fraud_model_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder with a production fraud model (the score stage declares it)."""
    state = tmp_path_factory.mktemp("pipeline-model") / "s"
    train_local("fraud", PlatformSettings(state_dir=state), rows=FRAUD_ROWS, echo=lambda _: None)
    return state


@pytest.fixture(scope="module")
def pipeline_functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("functions")
    for src in sorted(FUNCTIONS.glob("pipeline_*")):
        shutil.copytree(src, root / src.name, ignore=shutil.ignore_patterns("__pycache__"))
    _patch(root / "pipeline_ingest/function.toml", PIPELINE_CHUNK_SIZE=f'"{CHUNK_SIZE}"')
    store = root / "pipeline_store/function.toml"
    _patch(store, timeout_s="2", max_receive_count=str(STORE_MAX_RECEIVES))
    store.write_text(
        store.read_text().replace(
            "max_receive_count", "visibility_timeout_s = 2\nmax_receive_count"
        )
    )
    return root


@pytest.fixture(scope="module")
def runtime(
    pipeline_functions: Path, fraud_model_state: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRuntime]:
    state = tmp_path_factory.mktemp("state") / "s"
    with running_runtime(pipeline_functions, state, seed_state=fraud_model_state) as rt:
        yield rt


@pytest.fixture(scope="module")
def quiet_runtime(
    pipeline_functions: Path, fraud_model_state: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRuntime]:
    """The functions loaded, without event sources (no bucket watcher, no queue pollers), for
    invoking handlers directly; their queues exist, as CDK's would."""
    with running_runtime(
        pipeline_functions,
        tmp_path_factory.mktemp("quiet") / "s",
        seed_state=fraud_model_state,
        sources=False,
    ) as rt:
        queues = SqliteQueueService(rt.settings.state_dir / "queues.db")
        for spec in rt.catalog.functions:
            for cfg in triggers.queue_configs(spec):
                queues.ensure(cfg)
        yield rt
