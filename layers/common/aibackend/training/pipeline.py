"""The training pipeline of each model, declared once: prepare -> train -> evaluate -> gate ->
register.

One `PipelineSpec` per trainable model (`aibackend.training.local.TRAINABLE`), with the
defaults below, overridden by `[pipeline.<model>]` of `functions/training.toml`. Both
topologies read the same declaration:

- locally (`aibackend.training.pipeline_local`), each step runs as its own process inside a
  run folder laid out like a training container's `/opt/ml`; the train step is the entry
  point itself, run with the SageMaker training-container contract;
- on AWS (`infra/stacks/training.py`), the steps become one Step Functions state machine per
  model: prepare a Pass state fixing the run's prefixes, train a SageMaker training job on the
  declared instance type and image, evaluate and register Lambda functions, the gate a Choice
  on the evaluation's verdict.

Every step reads and writes folders of the run (`STEPS[i].inputs` / `.outputs`): under
`.aib/training/<run>/` locally, under `s3://<model bucket>/training/<model>/<run>/` on AWS.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aibackend.errors import ConfigError
from aibackend.training.common import HyperValue
from aibackend.training_config import config_path, sections, validated

StepName = Literal["prepare", "train", "evaluate", "gate", "register"]
#: Where a step runs on AWS.
Runner = Literal["pass", "sagemaker", "lambda", "choice"]


@dataclass(frozen=True)
class Step:
    """One step: what it reads and writes (folders of the run) and where it runs on AWS."""

    name: StepName
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    aws: Runner
    summary: str


#: The channel the train step reads (SageMaker: `/opt/ml/input/data/train`).
CHANNEL = "input/data/train/"
#: The model version folder the train step writes (SageMaker: `/opt/ml/model`).
MODEL = "model/"
EVALUATION = "evaluation/"
GATE = "gate/"
REGISTERED = "registered/"

STEPS: tuple[Step, ...] = (
    Step("prepare", (), (CHANNEL,), "pass", "write the training data into the train channel"),
    Step("train", (CHANNEL,), (MODEL,), "sagemaker", "fit, export ONNX, write the model folder"),
    Step(
        "evaluate",
        (CHANNEL, MODEL),
        (EVALUATION,),
        "lambda",
        "score the candidate and production on the holdout: the gate's checks",
    ),
    Step("gate", (EVALUATION,), (GATE,), "choice", "approve or reject on the checks"),
    Step(
        "register",
        (MODEL, EVALUATION, GATE),
        (REGISTERED,),
        "lambda",
        "register the version with its verdict; approved -> staging (first -> production)",
    ),
)
STEP_NAMES: tuple[StepName, ...] = tuple(s.name for s in STEPS)

#: `image = "framework"`: an AWS framework training container in script mode (the PyTorch
#: Deep Learning Container: Python 3.11, CPU or GPU build by instance type; see
#: infra/stacks/training.py); anything else is an image URI of your own (ECR).
FRAMEWORK_IMAGE = "framework"
_IMAGE_URI = re.compile(
    r"^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[\w./-]+[:@][\w.:-]+$"
)
_INSTANCE = re.compile(r"^ml\.[a-z0-9]+\.[0-9]*(x?large|medium|small)$")
#: Instance families with GPUs (for `PipelineSpec.gpu`).
_GPU_FAMILIES = ("ml.p", "ml.g", "ml.trn", "ml.inf")


class PipelineSpec(BaseModel):
    """`[pipeline.<model>]` of `functions/training.toml` (every key optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]
    #: The entry point, run as `python -m <module>` (SageMaker: the job's program).
    entry_point: str
    #: Rows the prepare step generates (locally; on AWS the data is already in the channel).
    rows: Annotated[int, Field(ge=1)]
    hyperparameters: dict[str, HyperValue] = Field(default_factory=dict)
    #: SageMaker training instance: CPU by default; a GPU type (ml.g5.xlarge) for heavy models.
    instance_type: str = "ml.m5.large"
    instance_count: Annotated[int, Field(ge=1, le=1)] = 1
    volume_gb: Annotated[int, Field(ge=1, le=16_384)] = 10
    max_runtime_s: Annotated[int, Field(ge=60, le=432_000)] = 3600
    #: "framework" (the framework container, script mode) or an image URI of your own.
    image: str = FRAMEWORK_IMAGE

    @field_validator("instance_type")
    @classmethod
    def _instance(cls, v: str) -> str:
        if not _INSTANCE.match(v):
            raise ValueError(
                f"{v!r} is not a SageMaker training instance type, e.g. ml.m5.large (CPU) "
                "or ml.g5.xlarge (GPU)"
            )
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if v != FRAMEWORK_IMAGE and not _IMAGE_URI.match(v):
            raise ValueError(
                f"{v!r}: use {FRAMEWORK_IMAGE!r} (SageMaker's scikit-learn framework container) "
                "or an ECR image URI, <account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>"
            )
        return v

    @property
    def gpu(self) -> bool:
        return self.instance_type.startswith(_GPU_FAMILIES)

    @property
    def framework(self) -> bool:
        return self.image == FRAMEWORK_IMAGE

    @property
    def steps(self) -> tuple[Step, ...]:
        return STEPS


def pipeline_specs(functions_dir: Path) -> dict[str, PipelineSpec]:
    """Every trainable model's pipeline, `[pipeline.<model>]` applied over its defaults.

    A section for a model `aib train` cannot train, or an invalid value, is a `ConfigError`
    naming the key and what is accepted."""
    from aibackend.training.local import TRAINABLE

    path, found = config_path(functions_dir), sections(functions_dir, "pipeline")
    unknown = sorted(set(found) - set(TRAINABLE))
    if unknown:
        raise ConfigError(
            f"{path}: [pipeline.{unknown[0]}]: no trainable model {unknown[0]!r}; "
            f"known: {', '.join(sorted(TRAINABLE))}"
        )
    specs: dict[str, PipelineSpec] = {}
    for name, trainable in sorted(TRAINABLE.items()):
        section = found.get(name, {})
        if not isinstance(section, Mapping):
            raise ConfigError(f"{path}: pipeline.{name} must be a table")
        fields = {"model": name, "entry_point": trainable.module, "rows": trainable.default_rows}
        specs[name] = validated(
            PipelineSpec, {**fields, **section}, key=f"pipeline.{name}", path=path
        )
    return specs


def pipeline_spec(model: str, functions_dir: Path) -> PipelineSpec:
    """The pipeline of `model`; `ConfigError` naming the trainable models if it has none."""
    specs = pipeline_specs(functions_dir)
    spec = specs.get(model)
    if spec is None:
        raise ConfigError(f"no trainable model {model!r}; known: {', '.join(sorted(specs))}")
    return spec
