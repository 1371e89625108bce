"""Synthesize the CDK app once per session; tests read its templates and reports.

Bundling is skipped (`aws:cdk:bundling-stacks=[]`: no pip downloads) and the fraud model's
version is pinned by context, so no training, registry or AWS account is needed.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# `infra` lives at the project root and is not installed (only `aibackend` is).
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# jsii's Node runtime prints a banner on Node versions it no longer supports.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

from aws_cdk import cx_api  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from infra.application import MODELS_STACK, SERVICES_STACK, AibApp, build_app  # noqa: E402

SYNTH_CONTEXT: dict[str, Any] = {"aws:cdk:bundling-stacks": [], "model:fraud:version": "3"}


@dataclass(frozen=True)
class Synth:
    built: AibApp
    assembly: cx_api.CloudAssembly
    outdir: Path
    models: Template
    services: Template

    def template_json(self, stack: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.outdir / f"{stack}.template.json").read_text())
        return data

    def resources(self, stack: str, type_: str) -> dict[str, dict[str, Any]]:
        return {
            k: v for k, v in self.template_json(stack)["Resources"].items() if v["Type"] == type_
        }


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    outdir = tmp_path_factory.mktemp("cdk.out")
    # Context given here must not be overridden by a developer's shell.
    saved = os.environ.pop("CDK_CONTEXT_JSON", None)
    try:
        built = build_app(ROOT, context=SYNTH_CONTEXT, outdir=str(outdir))
        assembly = built.app.synth()
    finally:
        if saved is not None:
            os.environ["CDK_CONTEXT_JSON"] = saved
    yield Synth(
        built=built,
        assembly=assembly,
        outdir=outdir,
        models=Template.from_json(
            json.loads((outdir / f"{MODELS_STACK}.template.json").read_text())
        ),
        services=Template.from_json(
            json.loads((outdir / f"{SERVICES_STACK}.template.json").read_text())
        ),
    )


@pytest.fixture
def functions_dir(tmp_path: Path) -> Path:
    """An empty `functions/` folder; tests write declarations into it."""
    d = tmp_path / "functions"
    d.mkdir()
    return d


def write_function(functions_dir: Path, name: str, toml: str) -> Path:
    folder = functions_dir / name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    (folder / "function.toml").write_text(toml)
    return folder / "function.toml"


@pytest.fixture
def new_function() -> Any:
    return write_function
