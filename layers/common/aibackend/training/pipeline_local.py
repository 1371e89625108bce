"""Run a model's training pipeline on this machine: each step its own process.

`run_pipeline` writes the run's parameters (`pipeline.json`) into a fresh run folder under
`<state>/training/`, then runs the declared steps (`aibackend.training.pipeline.STEPS`) one
after the other: prepare, evaluate, gate and register as `python -m aibackend.training.step
<step> <run folder>`, train as the model's entry point with the SageMaker training-container
contract (`SM_MODEL_DIR`, `SM_CHANNEL_TRAIN`, `SM_HPS`, ...). It shows `[i/n] step` with the
elapsed time and streams each step's own output (the entry point's progress lines), keeps it
in `logs/<step>.log`, and records every step's status, exit code, duration and log in
`run.json`. A step that fails stops the run: the record says which, and `TrainingError`
quotes the end of its output.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from aibackend.settings import ENV_PREFIX, PlatformSettings
from aibackend.training.common import TrainingError, sagemaker_env, stream_process
from aibackend.training.pipeline import MODEL, REGISTERED, PipelineSpec, Step
from aibackend.training.step import VERSION_FILE, RunParams

RECORD_FILE = "run.json"

Status = Literal["pending", "running", "succeeded", "failed", "skipped"]


@dataclass
class StepRecord:
    name: str
    status: Status = "pending"
    exit_code: int | None = None
    started_at: str | None = None
    elapsed_s: float | None = None
    log: str | None = None


@dataclass
class RunRecord:
    """`run.json`: the run's progress, rewritten after every change of a step's status."""

    run_id: str
    model: str
    run_dir: str
    status: Literal["running", "succeeded", "failed"] = "running"
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    elapsed_s: float = 0.0
    steps: list[StepRecord] = field(default_factory=list)
    #: Registered version (after the register step).
    version: int | None = None
    error: str | None = None

    def write(self) -> None:
        path = Path(self.run_dir) / RECORD_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def read(cls, run_dir: Path) -> RunRecord:
        doc = json.loads((run_dir / RECORD_FILE).read_text(encoding="utf-8"))
        doc["steps"] = [StepRecord(**s) for s in doc["steps"]]
        return cls(**doc)


def settings_env(settings: PlatformSettings) -> dict[str, str]:
    """The `AIB_*` variables a child process reads its `PlatformSettings` from (folders
    absolute: steps run in the run folder)."""
    return {
        f"{ENV_PREFIX}{name.upper()}": str(value.resolve() if isinstance(value, Path) else value)
        for name, value in settings.model_dump().items()
        if value is not None
    }


def step_command(step: Step, run_dir: Path, params: RunParams) -> list[str]:
    if step.name == "train":
        return [sys.executable, "-m", params.entry_point]
    return [sys.executable, "-m", "aibackend.training.step", step.name, str(run_dir)]


def _run_step(
    step: Step,
    command: list[str],
    env: Mapping[str, str],
    run_dir: Path,
    record: StepRecord,
    echo: Callable[[str], None],
) -> list[str]:
    """Run one step's process; its output goes to `echo` (indented) and its log file."""
    log = run_dir / "logs" / f"{step.name}.log"
    log.parent.mkdir(exist_ok=True)
    record.log = str(log)
    record.exit_code, tail = stream_process(
        command, cwd=run_dir, env=env, echo=lambda line: echo(f"  {line}"), log_file=log
    )
    return tail


def run_pipeline(
    spec: PipelineSpec,
    params: RunParams,
    settings: PlatformSettings,
    run_dir: Path,
    *,
    echo: Callable[[str], None] = print,
) -> RunRecord:
    """Run every step of `spec` in `run_dir` (fresh, empty); returns the finished record.

    Raises `TrainingError` (the record marks the step failed) when a step exits non-zero."""
    params.write(run_dir)
    record = RunRecord(
        run_id=run_dir.name,
        model=spec.model,
        run_dir=str(run_dir),
        steps=[StepRecord(s.name) for s in spec.steps],
    )
    record.write()
    env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}
    train_env = {**env, **sagemaker_env(run_dir, params.hyperparameters)}
    (run_dir / MODEL).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n = len(spec.steps)
    echo(f"training run {run_dir.name}: {' -> '.join(s.name for s in spec.steps)}")
    for i, (step, step_record) in enumerate(zip(spec.steps, record.steps, strict=True), 1):
        echo(f"[{i}/{n}] {step.name} ({time.perf_counter() - t0:.1f} s): {step.summary}")
        step_record.status = "running"
        step_record.started_at = datetime.now(UTC).isoformat()
        record.write()
        started = time.perf_counter()
        command = step_command(step, run_dir, params)
        tail = _run_step(
            step, command, train_env if step.name == "train" else env, run_dir, step_record, echo
        )
        step_record.elapsed_s = round(time.perf_counter() - started, 3)
        record.elapsed_s = round(time.perf_counter() - t0, 3)
        if step_record.exit_code != 0:
            _fail(record, i, step_record, tail)
        step_record.status = "succeeded"
        record.write()
    version = json.loads((run_dir / REGISTERED / VERSION_FILE).read_text(encoding="utf-8"))
    record.version = int(version["version"])
    record.status = "succeeded"
    record.write()
    return record


def _fail(record: RunRecord, index: int, step: StepRecord, tail: list[str]) -> None:
    step.status = "failed"
    for later in record.steps[index:]:
        later.status = "skipped"
    record.status = "failed"
    record.error = (
        f"step {index}/{len(record.steps)} {step.name} exited with {step.exit_code} "
        f"(log {step.log})"
    )
    record.write()
    quoted = "\n".join(tail)
    raise TrainingError(f"training run {record.run_dir}: {record.error}; last output:\n{quoted}")
