"""Train a model on this machine: its declared pipeline, one process per step.

`train_local` lays out a run folder like a training container's `/opt/ml`
(`input/data/train/`, `model/`, `output/data/`) under the state folder and runs the model's
pipeline there (`aibackend.training.pipeline_local`): prepare the data, run
`python -m <entry point>` with the `SM_*` variables set, evaluate, gate, register. The
processes keep scikit-learn out of the caller's process and make the local run the same
program a SageMaker job runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aibackend.errors import ConfigError
from aibackend.ports import ModelRegistry, ModelVersion
from aibackend.settings import PlatformSettings
from aibackend.training.common import (
    DATA_SUFFIXES,
    HyperValue,
    TrainingError,
    sagemaker_env,
    stream_process,
)
from aibackend.training.gate import GateConfig, load_config


@dataclass(frozen=True)
class TrainableModel:
    """A model `train_local` knows: its entry point and how to prepare its training data."""

    name: str
    #: Module run as `python -m <module>`.
    module: str
    default_rows: int
    #: Writes `rows` rows of training data into the channel folder (seeded).
    prepare: Callable[[Path, int, int], Path]


def _prepare_fraud(channel_dir: Path, rows: int, seed: int) -> Path:
    from aibackend.training.fraud import prepare

    return prepare(channel_dir, rows=rows, seed=seed)


def _prepare_recommendations(channel_dir: Path, rows: int, seed: int) -> Path:
    from aibackend.training.recommendations import prepare

    return prepare(channel_dir, rows=rows, seed=seed)


def _prepare_sentiment(channel_dir: Path, rows: int, seed: int) -> Path:
    from aibackend.training.sentiment import prepare

    return prepare(channel_dir, rows=rows, seed=seed)


#: Models `aib train` can build locally. Fraud: 500k generated transactions take ~16 s end to
#: end on two cores (generate, train, export, register) and hold out 100k rows (~1,000 fraud),
#: enough for stable metrics; more rows barely move the AUC.
TRAINABLE: dict[str, TrainableModel] = {
    "fraud": TrainableModel(
        name="fraud",
        module="aibackend.training.fraud",
        default_rows=500_000,
        prepare=_prepare_fraud,
    ),
    # 200k generated interactions (5,000 users, 2,000 items): ~5 s end to end on two cores;
    # the holdout's NDCG@10 moves by under 0.01 between seeds.
    "recommendations": TrainableModel(
        name="recommendations",
        module="aibackend.training.recommendations",
        default_rows=200_000,
        prepare=_prepare_recommendations,
    ),
    # The whole committed corpus (generated + hand-written sentences; fewer rows: a seeded
    # sample) and the hand-written holdout: ~3 s end to end on two cores.
    "sentiment": TrainableModel(
        name="sentiment",
        module="aibackend.training.sentiment",
        default_rows=3_182,
        prepare=_prepare_sentiment,
    ),
}


def _prepare_iot(device_type: str) -> Callable[[Path, int, int], Path]:
    def prepare(channel_dir: Path, rows: int, seed: int) -> Path:
        from aibackend.training.iot import prepare

        return prepare(channel_dir, device_type=device_type, rows=rows, seed=seed)

    return prepare


# IoT anomaly models, one per device type (the keys of `aibackend.iot.devices.DEVICE_TYPES`):
# 9,000 readings of 30 devices each, ~6 s end to end on two cores.
TRAINABLE.update(
    {
        f"iot_{device_type}": TrainableModel(
            name=f"iot_{device_type}",
            module="aibackend.training.iot",
            default_rows=9_000,
            prepare=_prepare_iot(device_type),
        )
        for device_type in ("thermostat", "vibration", "pressure")
    }
)


def _run_dir(root: Path, model: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for i in range(1, 1000):
        folder = root / (f"{model}-{stamp}" if i == 1 else f"{model}-{stamp}-{i}")
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            continue
        return folder
    raise TrainingError(f"{root}: cannot create a run folder for {model!r}")


def run_entry_point(
    module: str,
    *,
    run_dir: Path,
    hyperparameters: Mapping[str, HyperValue] | None = None,
    echo: Callable[[str], None] = print,
    env: Mapping[str, str] | None = None,
) -> Path:
    """Run `python -m module` in `run_dir`'s `/opt/ml`-like layout; returns the model folder.

    Its output (stdout and stderr) goes line by line to `echo`; a non-zero exit raises
    `TrainingError` quoting the last lines.
    """
    model_dir = run_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    child_env = {
        **(os.environ if env is None else env),
        **sagemaker_env(run_dir, hyperparameters or {}),
        "PYTHONUNBUFFERED": "1",
    }
    rc, tail = stream_process([sys.executable, "-m", module], cwd=run_dir, env=child_env, echo=echo)
    if rc != 0:
        quoted = "\n".join(tail)
        raise TrainingError(
            f"training entry point {module} exited with {rc} (run folder {run_dir}); "
            f"last output:\n{quoted}"
        )
    return model_dir


def train_local(
    model: str,
    settings: PlatformSettings,
    *,
    rows: int | None = None,
    seed: int = 7,
    hyperparameters: Mapping[str, HyperValue] | None = None,
    promote: bool = True,
    echo: Callable[[str], None] = print,
    data: Path | None = None,
    gate: GateConfig | None = None,
    actor: str = "aib train",
) -> ModelVersion:
    """Run `model`'s training pipeline (`aibackend.training.pipeline_local`: prepare, train,
    evaluate, gate, register, each step its own process) and return the registered version.

    Approved: the version goes to `staging`, or straight to `production` when the model has
    no production version yet (a first start has something to serve). Rejected: it stays a
    `candidate`, the failed checks echoed. `promote=False` records the verdict only.
    `gate`: the gate configuration (default: `[gate.<model>]` of `functions/training.toml`).

    `data`: a CSV file of your own (`.csv` or `.csv.gz`), copied into the training channel
    instead of generated data; the entry point checks its columns. Otherwise `rows` rows
    are generated, by default the pipeline's (`[pipeline.<model>] rows`, else the model's
    `default_rows`). Runs live in `<state_dir>/training/<model>-<UTC timestamp>/`, with
    `run.json`. Raises `ConfigError` for an unknown model or bad arguments and
    `TrainingError` when a step fails.
    """
    spec = TRAINABLE.get(model)
    if spec is None:
        raise ConfigError(f"no trainable model {model!r}; known: {', '.join(sorted(TRAINABLE))}")
    from aibackend.adapters import model_registry
    from aibackend.catalog import default_functions_dir
    from aibackend.training.pipeline import pipeline_spec
    from aibackend.training.pipeline_local import run_pipeline
    from aibackend.training.step import RunParams

    functions_dir = default_functions_dir()
    pipeline = pipeline_spec(model, functions_dir)
    n = pipeline.rows if rows is None else rows
    if n <= 0:
        raise ConfigError(f"rows must be a positive number, got {n}")
    if data is not None:
        _check_data_file(data, rows)
    registry = model_registry(settings)
    # Lineage: the version this run would replace, read before the data is.
    parent = registry.production(model)
    params = RunParams(
        model=model,
        entry_point=spec.module,
        rows=n,
        seed=seed,
        data=None if data is None else data.resolve(),
        hyperparameters={**pipeline.hyperparameters, **(hyperparameters or {})},
        gate=gate or load_config(model, functions_dir),
        promote=promote,
        actor=actor,
        parent_version=parent.version if parent else None,
    )
    run_dir = _run_dir((settings.state_dir / "training").resolve(), model)
    record = run_pipeline(pipeline, params, settings, run_dir, echo=echo)
    assert record.version is not None  # set by a run that succeeded
    return registry.get(model, record.version)


def act_on_verdict(
    registry: ModelRegistry,
    mv: ModelVersion,
    *,
    promote: bool,
    actor: str,
    echo: Callable[[str], None],
) -> ModelVersion:
    """Approved: staging, or production for a model without one. Rejected: stays a candidate."""
    if mv.gate is not None and not mv.gate.approved:
        failed = ", ".join(c.name for c in mv.gate.failed)
        echo(f"{mv.name} v{mv.version} REJECTED by the gate ({failed}): it stays a candidate")
        return mv
    if not promote:
        echo(f"{mv.name} v{mv.version} approved; left a candidate (--no-promote)")
        return mv
    if registry.production(mv.name) is None:
        mv = registry.promote(
            mv.name,
            mv.version,
            actor=actor,
            reason="approved by the gate; the model had no production version",
        )
        echo(f"{mv.name} v{mv.version} approved and, as the first version, now production")
        return mv
    mv = registry.set_stage(
        mv.name, mv.version, "staging", actor=actor, reason="approved by the gate"
    )
    echo(
        f"{mv.name} v{mv.version} approved: staging; serve it with "
        f"`aib models promote {mv.name} {mv.version} --reason ...`"
    )
    return mv


def _check_data_file(data: Path, rows: int | None) -> None:
    if rows is not None:
        raise ConfigError("give either rows (generated data) or a data file, not both")
    if not data.is_file():
        raise ConfigError(f"{data}: no such file; pass the path of a CSV file")
    if not data.name.endswith(DATA_SUFFIXES):
        raise ConfigError(
            f"{data}: name it *.csv or *.csv.gz (a CSV with a header row; gzip for .gz)"
        )
