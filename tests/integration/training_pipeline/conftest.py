"""A functions folder holding the retraining trigger, retraining with a tiny row count."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import FUNCTIONS

#: Rows a retraining run started by these tests generates (a run takes ~4 s).
RETRAIN_ROWS = 2_000


@pytest.fixture(scope="module")
def trigger_functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`functions/retrain_trigger` as declared, but retraining on RETRAIN_ROWS rows."""
    root = tmp_path_factory.mktemp("functions")
    folder = root / "retrain_trigger"
    shutil.copytree(
        FUNCTIONS / "retrain_trigger", folder, ignore=shutil.ignore_patterns("__pycache__")
    )
    toml = folder / "function.toml"
    declared = 'RETRAIN_LOCAL_ROWS = ""'
    assert declared in toml.read_text()
    toml.write_text(toml.read_text().replace(declared, f'RETRAIN_LOCAL_ROWS = "{RETRAIN_ROWS}"'))
    return root
