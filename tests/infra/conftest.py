"""Synthesize the CDK app once per session; tests read its templates and reports.

Bundling is skipped (`aws:cdk:bundling-stacks=[]`: no pip downloads) and the fraud model's
version is pinned by context, so no training, registry or AWS account is needed.
"""

from __future__ import annotations

import json
import os
import re
import sys
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

from aibackend.catalog import load_catalog  # noqa: E402
from infra.application import (  # noqa: E402
    API_STACK,
    DATA_STACK,
    MODELS_STACK,
    SHARED_STACK,
    AibApp,
    build_app,
    split_training,
)
from infra.offline_context import offline_context  # noqa: E402

#: Bundling off, and every model the project serves pinned to version 3: the endpoints' model
#: too, so AibEndpoints is synthesized (and checked) whether or not this machine ran
#: `make embeddings`. CI's synth uses the same context (version 1).
SYNTH_CONTEXT: dict[str, Any] = offline_context(ROOT / "functions", version=3)
#: The project's functions that the service stacks build: all but AibTraining's (the
#: retraining trigger deploys with the training pipelines).
SERVICE_CATALOG = split_training(load_catalog(ROOT / "functions"))[0]

#: cfn-lint W3005 ("dependency already enforced by a GetAtt") on a Lambda's `Role`: CDK always
#: adds DependsOn on the role *construct* so the function waits for the role's DefaultPolicy;
#: the Role half of that DependsOn duplicates the GetAtt. Harmless, and not ours to remove.
_CDK_ROLE_DEPENDS_ON = re.compile(r"already enforced by a 'GetAtt' at '.*/Properties/Role'")


@dataclass(frozen=True)
class Synth:
    built: AibApp
    assembly: cx_api.CloudAssembly
    outdir: Path
    models: Template
    data: Template
    shared: Template
    api: Template

    @property
    def service_stacks(self) -> list[str]:
        """The group stacks' names, AibApi last."""
        return [s.stack_name for s in self.built.service_stacks]

    def stack_of(self, function: str) -> str:
        """The name of the stack that holds `function`."""
        (stack,) = [s for s in self.built.service_stacks if function in s.functions]
        return stack.stack_name

    def template_json(self, stack: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.outdir / f"{stack}.template.json").read_text())
        return data

    def resources(self, stack: str, type_: str) -> dict[str, dict[str, Any]]:
        return {
            k: v for k, v in self.template_json(stack)["Resources"].items() if v["Type"] == type_
        }

    def imported(self, producer: str, value: Any) -> dict[str, str]:
        """`value` (e.g. `{"Fn::GetAtt": [queue, "Arn"]}` of stack `producer`) as the group stacks
        see it: an import of the producer's export of that value."""
        (name,) = [
            o["Export"]["Name"]
            for o in self.template_json(producer).get("Outputs", {}).values()
            if "Export" in o and o["Value"] == value
        ]
        return {"Fn::ImportValue": name}

    def service_resources(self, type_: str) -> dict[str, dict[str, Any]]:
        """`resources` of every group stack and AibApi together. Logical ids are unique across
        them except for the layers every group builds alike (the same id, one kept here)."""
        return {
            k: v for stack in self.service_stacks for k, v in self.resources(stack, type_).items()
        }

    def methods(self, stack: str = API_STACK) -> dict[tuple[str, str], dict[str, Any]]:
        """(HTTP method, resource path) -> AWS::ApiGateway::Method properties."""
        api_resources = self.resources(stack, "AWS::ApiGateway::Resource")

        def path_of(ref: Any) -> str:
            if not isinstance(ref, dict) or "Ref" not in ref:  # the root resource (GetAtt)
                return ""
            res = api_resources[ref["Ref"]]["Properties"]
            return f"{path_of(res['ParentId'])}/{res['PathPart']}"

        return {
            (m["Properties"]["HttpMethod"], path_of(m["Properties"]["ResourceId"]) or "/"): m[
                "Properties"
            ]
            for m in self.resources(stack, "AWS::ApiGateway::Method").values()
        }

    def cfn_lint_findings(self) -> list[str]:
        """cfn-lint errors and warnings of every template, minus CDK's known noise."""
        from cfnlint.api import lint_file

        return [
            f"{t.name}: {m.rule.id} {m.message}"
            for t in sorted(self.outdir.glob("*.template.json"))
            for m in lint_file(t)
            if m.rule.id[0] in "EW"
            and not (m.rule.id == "W3005" and _CDK_ROLE_DEPENDS_ON.search(m.message))
        ]

    def nag_report(self) -> dict[str, Any]:
        """The AwsSolutions plugin's part of the validation report CDK writes at synth."""
        report = json.loads((self.outdir / "validation-report.json").read_text())
        (nag,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
        data: dict[str, Any] = nag
        return data


def synthesize(
    outdir: Path, *, functions_dir: Path | None = None, context: dict[str, Any] | None = None
) -> Synth:
    """Build and synthesize the app (functions/ of the project unless `functions_dir`)."""
    # Context given here must not be overridden by a developer's shell.
    saved = os.environ.pop("CDK_CONTEXT_JSON", None)
    try:
        built = build_app(
            ROOT,
            context=SYNTH_CONTEXT if context is None else context,
            outdir=str(outdir),
            functions_dir=functions_dir,
        )
        assembly = built.app.synth()
    finally:
        if saved is not None:
            os.environ["CDK_CONTEXT_JSON"] = saved

    def template(stack: str) -> Template:
        return Template.from_json(json.loads((outdir / f"{stack}.template.json").read_text()))

    return Synth(
        built=built,
        assembly=assembly,
        outdir=outdir,
        models=template(MODELS_STACK),
        data=template(DATA_STACK),
        shared=template(SHARED_STACK),
        api=template(API_STACK),
    )


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def synthesizer() -> Any:
    """`synthesize`, for module fixtures that synthesize their own `functions/`."""
    return synthesize


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


@pytest.fixture(scope="session")
def new_function() -> Any:
    return write_function
