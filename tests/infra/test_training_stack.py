"""AibTraining: a state machine per trainable model from its declaration, the retraining
trigger that may start them and nothing else, and training libraries kept out of every
Lambda function's run-time requirements."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from aibackend.catalog import load_catalog
from aibackend.training.gate import GateConfig
from aibackend.training.pipeline import PipelineSpec, pipeline_specs
from infra.application import TRAINING_STACK, cdk_json_context
from infra.config import InfraConfig
from infra.constructs.layers import COMMON_EXCLUDES
from infra.stacks.data import DataStack
from infra.stacks.models import ModelsStack
from infra.stacks.training import FRAMEWORK_TAGS, TrainingStack

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog(ROOT / "functions")
#: The trainable models the project's functions serve: one state machine each.
PIPELINES = {
    m: s for m, s in pipeline_specs(ROOT / "functions").items() if m in CATALOG.model_names
}
TRAINING_LIBRARIES = {"scikit-learn", "sklearn", "skl2onnx", "torch"}


def _definition(machine: dict[str, Any]) -> dict[str, Any]:
    """The state machine's definition with CloudFormation tokens replaced by `<token>`."""
    body = machine["Properties"]["DefinitionString"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    text = "".join(p if isinstance(p, str) else "<token>" for p in parts)
    data: dict[str, Any] = json.loads(text)
    return data


def _machines(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        r["Properties"]["StateMachineName"]: r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::StepFunctions::StateMachine"
    }


@pytest.fixture(scope="module")
def training(synth: Any) -> dict[str, Any]:
    data: dict[str, Any] = synth.template_json(TRAINING_STACK)
    return data


def test_each_trainable_model_has_its_state_machine_with_the_five_steps(
    training: dict[str, Any],
) -> None:
    machines = _machines(training)
    # THEN one per trainable model the functions serve, named for the trigger
    assert set(machines) == {f"aib-training-{m}" for m in PIPELINES}
    assert {"fraud", "sentiment", "recommendations"} <= set(PIPELINES)
    for model, spec in PIPELINES.items():
        machine = machines[f"aib-training-{model}"]
        states = _definition(machine)["States"]
        # AND prepare -> train -> evaluate -> gate -> register, as declared
        assert _definition(machine)["StartAt"] == "Prepare"
        assert states["Prepare"]["Next"] == "Train"
        assert states["Train"]["Next"] == "Evaluate"
        assert states["Evaluate"]["Next"] == "Gate"
        # AND the training job runs to completion on the declared instance type and image
        train = states["Train"]
        assert train["Resource"].endswith(":states:::sagemaker:createTrainingJob.sync")
        assert train["Parameters"]["ResourceConfig"]["InstanceType"] == spec.instance_type
        image = train["Parameters"]["AlgorithmSpecification"]["TrainingImage"]
        assert image.endswith(f"/pytorch-training:{FRAMEWORK_TAGS['cpu']}")
        hps = train["Parameters"]["HyperParameters"]
        assert hps["sagemaker_program"] == f"train_{model}.py"
        # AND evaluate and register are the training stack's Lambda functions
        for step in ("Evaluate", "Register", "RecordRejection"):
            assert states[step]["Resource"].endswith(":states:::lambda:invoke")
        # AND the gate approves on the evaluation's verdict, or the run fails as rejected
        gate = states["Gate"]
        assert gate["Type"] == "Choice"
        (rule,) = gate["Choices"]
        assert (rule["Variable"], rule["BooleanEquals"], rule["Next"]) == (
            "$.evaluation.approved",
            True,
            "Register",
        )
        assert gate["Default"] == "RecordRejection"
        assert states["RecordRejection"]["Next"] == "GateRejected"
        assert states["GateRejected"]["Type"] == "Fail"
        # AND the evaluate step carries the model's gate configuration
        assert states["Evaluate"]["Parameters"]["Payload"]["gate"]["key_metric"] == "roc_auc"
        # AND every task catches any error into the Fail state with its cause
        for name in ("Train", "Evaluate", "Register", "RecordRejection"):
            (catch,) = states[name]["Catch"]
            assert (catch["ErrorEquals"], catch["Next"]) == (["States.ALL"], "Failed"), name
        assert states["Failed"] == {
            "Type": "Fail",
            "ErrorPath": "$.error.Error",
            "CausePath": "$.error.Cause",
        }
        # AND Lambda steps retry throttling and service errors
        for name in ("Evaluate", "Register"):
            retried = {e for r in states[name]["Retry"] for e in r["ErrorEquals"]}
            assert {"Lambda.TooManyRequestsException", "Lambda.ServiceException"} <= retried
        # AND executions are logged in full and traced
        props = machine["Properties"]
        assert props["LoggingConfiguration"]["Level"] == "ALL"
        assert props["TracingConfiguration"] == {"Enabled": True}


def test_fraud_trains_on_its_declared_larger_instance(training: dict[str, Any]) -> None:
    states = _definition(_machines(training)["aib-training-fraud"])["States"]
    assert states["Train"]["Parameters"]["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"


def _statements(template: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    return [
        st
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Policy" and name.startswith(role_prefix)
        for st in r["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(st: dict[str, Any]) -> list[str]:
    a = st["Action"]
    return a if isinstance(a, list) else [a]


def test_the_trigger_may_start_the_state_machines_and_nothing_else(
    synth: Any, training: dict[str, Any]
) -> None:
    # GIVEN the trigger's role
    statements = _statements(training, "RetrainTriggerRole")
    states = [st for st in statements if any(a.startswith("states:") for a in _actions(st))]
    # THEN its one Step Functions statement starts exactly the training state machines
    (start,) = states
    assert _actions(start) == ["states:StartExecution"]
    machines = {
        name
        for name, r in training["Resources"].items()
        if r["Type"] == "AWS::StepFunctions::StateMachine"
    }
    assert sorted(r["Ref"] for r in start["Resource"]) == sorted(machines)
    # AND no other role of any stack may start an execution
    for stack in (*synth.service_stacks, "AibShared", "AibData", "AibModels", TRAINING_STACK):
        for st in _statements(synth.template_json(stack), ""):
            if "states:StartExecution" in _actions(st):
                assert st is start or st == start, stack
    # AND it learns the policies and the machines' ARN prefix from its environment
    (fn,) = [
        r
        for r in training["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
        and r["Properties"]["Handler"] == "retrain_trigger.handler.handler"
    ]
    env = fn["Properties"]["Environment"]["Variables"]
    assert set(json.loads(env["RETRAIN_CONFIG"])["models"]) == set(PIPELINES)
    assert "TRAINING_STATE_MACHINE_ARN_PREFIX" in env


def test_the_trigger_listens_to_findings_and_its_schedule(training: dict[str, Any]) -> None:
    rules = [
        r["Properties"] for r in training["Resources"].values() if r["Type"] == "AWS::Events::Rule"
    ]
    patterns = [r["EventPattern"] for r in rules if "EventPattern" in r]
    assert patterns == [
        {
            "source": ["aib.monitoring"],
            "detail-type": ["Model Drift Detected", "Model Performance Degraded"],
        }
    ]
    assert [r["ScheduleExpression"] for r in rules if "ScheduleExpression" in r] == [
        "cron(0 3 ? * MON *)"
    ]


def test_training_job_role_reads_channels_and_writes_runs_only(training: dict[str, Any]) -> None:
    statements = _statements(training, "JobRole")
    text = json.dumps(statements)
    # THEN no bucket-wide or whole-service object access
    for st in statements:
        for action in _actions(st):
            assert not action.startswith("s3:") or action in {
                "s3:GetObject",
                "s3:PutObject",
                "s3:ListBucket",
            }
    assert "training-data/fraud/*" in text and "training/fraud/*" in text
    assert "sagemaker:" not in text  # the job does not start jobs


def test_a_gpu_declaration_gets_a_gpu_instance_and_image() -> None:
    # GIVEN a pipeline declared on a GPU instance, in a stack of its own
    app = cdk.App(context={**cdk_json_context(ROOT), "aws:cdk:bundling-stacks": []})
    config = InfraConfig()
    models = ModelsStack(app, "M", config=config)
    data = DataStack(app, "D", bucket_names=[], table_names=[], expirations={}, config=config)
    spec = PipelineSpec(
        model="sentiment",
        entry_point="aibackend.training.sentiment",
        rows=100,
        instance_type="ml.g5.xlarge",
    )
    stack = TrainingStack(
        app,
        "T",
        pipelines={"sentiment": spec},
        gates={"sentiment": GateConfig()},
        layers_dir=ROOT / "layers",
        model_bucket=models.model_bucket,
        registry_table=models.registry_table,
        config=config,
        bus=data.bus,
    )
    template = Template.from_stack(stack).to_json()
    states = _definition(_machines(template)["aib-training-sentiment"])["States"]
    # THEN the job asks for that instance and the GPU build of the framework image
    params = states["Train"]["Parameters"]
    assert params["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    assert params["AlgorithmSpecification"]["TrainingImage"].endswith(FRAMEWORK_TAGS["gpu"])


# --- run-time requirements ---------------------------------------------------------------


def _requirement_names(path: Path) -> set[str]:
    return _requirement_names_of(path.read_text())


def _closure(names: set[str]) -> set[str]:
    """`names` and everything they require (installed distributions' metadata, no extras)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [
            re.split(r"[\s\[<>=!~;(]", r, maxsplit=1)[0] for r in requires if "extra ==" not in r
        ]
    return seen


def _module_imports(package: Path) -> Iterator[tuple[Path, str]]:
    """Top-level imports of each module the common layer ships (what loading it imports)."""
    for path in package.rglob("*.py"):
        if set(path.relative_to(package.parent).parts) & set(COMMON_EXCLUDES):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                yield from ((path, a.name.split(".")[0]) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                yield path, node.module.split(".")[0]


def test_no_lambda_function_ships_a_training_library(synth: Any) -> None:
    # GIVEN every Lambda function of every stack and the layers it is assembled from
    checked = 0
    for stack in (*synth.service_stacks, TRAINING_STACK):
        template = synth.template_json(stack)
        sources = {
            h: Path(f["source"]["path"])
            for h, f in json.loads((synth.outdir / f"{stack}.assets.json").read_text())[
                "files"
            ].items()
        }
        resources = template["Resources"]
        for name, fn in resources.items():
            if fn["Type"] != "AWS::Lambda::Function" or "Layers" not in fn["Properties"]:
                continue
            requirements: set[str] = set()
            for ref in fn["Properties"]["Layers"]:
                layer = resources[ref["Ref"]]["Properties"]["Content"]["S3Key"]
                folder = sources[layer.removesuffix(".zip")]
                if not folder.is_absolute():
                    folder = synth.outdir / folder
                if (folder / "requirements.txt").is_file():
                    requirements |= _requirement_names(folder / "requirements.txt")
            # THEN the resolved requirements hold no training library
            resolved = _closure(requirements)
            assert "onnxruntime" in resolved or "pydantic" in resolved, name
            assert not resolved & TRAINING_LIBRARIES, (stack, name, resolved & TRAINING_LIBRARIES)
            checked += 1
    assert checked >= len(CATALOG.functions) + 2  # the services, the trigger, evaluate, register
    # AND no module the common layer ships imports one when it loads
    offenders = [
        f"{p.relative_to(ROOT)} imports {m}"
        for p, m in _module_imports(ROOT / "layers" / "common" / "aibackend")
        if m in {"sklearn", "skl2onnx", "torch"}
    ]
    assert offenders == []


def test_the_lambda_steps_load_without_training_libraries() -> None:
    # GIVEN the evaluate/register handlers' module (their asset holds aibackend.training)
    import subprocess
    import sys

    code = (
        "import sys, aibackend.training.pipeline_lambda, aibackend.training.local, "
        "aibackend.training.gate\n"
        "print(sorted(m for m in ('sklearn', 'skl2onnx', 'torch', 'scipy') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    # THEN importing them (what Lambda's INIT does) imports no training library
    assert done.stdout.strip() == "[]"


def test_the_script_mode_source_runs_each_entry_point_with_its_requirements() -> None:
    # GIVEN the source archive the framework container downloads
    import io
    import tarfile

    from infra.stacks.training import source_archive

    data = source_archive(ROOT / "layers" / "common" / "aibackend", PIPELINES)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = set(tar.getnames())
        program = tar.extractfile("train_fraud.py").read().decode()  # type: ignore[union-attr]
        requirements = tar.extractfile("requirements.txt").read().decode()  # type: ignore[union-attr]
    # THEN it holds the package with its training code, one program per model, and the
    # training libraries the container installs (they never reach a Lambda function)
    assert "aibackend/training/fraud.py" in names
    assert not any("__pycache__" in n for n in names)
    assert {f"train_{m}.py" for m in PIPELINES} <= names
    assert "runpy.run_module('aibackend.training.fraud', run_name='__main__')" in program
    assert {"scikit-learn", "skl2onnx", "onnx"} <= _requirement_names_of(requirements)


def _requirement_names_of(text: str) -> set[str]:
    """Distribution names of a requirements file's lines (comments and pins dropped)."""
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[\s\[<>=!~;]", line, maxsplit=1)[0].lower())
    return names
