"""A workspace trained once per session: `aib model train` on the messy churn CSV and `aib model
import` of a tiny logistic regression, each scaffolded into a temporary functions folder."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aibackend.cli import main
from tests.conftest import build_tiny_model
from tests.integration.byom.messy_csv import churn_csv

TINY_SCHEMA = {
    "inputs": [{"name": "x0", "type": "numeric"}, {"name": "x1", "type": "numeric"}],
    "output": {"kind": "classification", "labels": ["neg", "pos"]},
}


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def functions(self) -> Path:
        return self.root / "functions"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def copy(self, dest: Path) -> Workspace:
        """A copy a test may change (promote, add functions)."""
        shutil.copytree(self.root, dest)
        return Workspace(dest)


def aib(*args: str) -> int:
    """`aib ...` in this process, leaving the environment as it found it."""
    saved = dict(os.environ)
    try:
        return main(list(args))
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def byom_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """Model `churn` (trained from a messy CSV) and model `tiny` (imported), each with its
    scaffolded function, production versions in the state folder."""
    ws = Workspace(tmp_path_factory.mktemp("byom"))
    ws.functions.mkdir()
    data = churn_csv(ws.root / "Churn Export.csv")
    common = ("--functions", str(ws.functions), "--state-dir", str(ws.state), "model")
    assert aib(*common, "train", "--csv", str(data), "--target", "churned", "--name", "churn") == 0
    tiny = build_tiny_model(ws.root / "tiny") / "model.onnx"
    schema = ws.root / "tiny.json"
    schema.write_text(json.dumps(TINY_SCHEMA))
    assert (
        aib(*common, "import", "--onnx", str(tiny), "--schema", str(schema), "--name", "tiny") == 0
    )
    yield ws
