"""One step of a local training run, as its own process:
`python -m aibackend.training.step <prepare|evaluate|gate|register> <run folder>`.

The run folder holds `pipeline.json` (the run's parameters, written by
`aibackend.training.pipeline_local`) and the folders the steps read and write
(`aibackend.training.pipeline.STEPS`). The train step is not here: it is the model's entry
point itself, run with the SageMaker training-container contract. The platform settings
(registry, state folder) come from the `AIB_*` environment, as in every process.

Exit codes: 0 done (a rejected candidate is a result, not a failure), 2 the step failed (its
reason on stderr).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from aibackend.errors import AibError
from aibackend.ports import GateVerdict
from aibackend.settings import PlatformSettings
from aibackend.training.common import HyperValue
from aibackend.training.gate import GateConfig
from aibackend.training.pipeline import CHANNEL, EVALUATION, GATE, MODEL, REGISTERED

#: The run's parameters, in the run folder.
PARAMS_FILE = "pipeline.json"
VERDICT_FILE = "verdict.json"
DECISION_FILE = "decision.json"
VERSION_FILE = "version.json"


class RunParams(BaseModel):
    """What every step of one run needs to know, written once before the first step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    entry_point: str
    rows: int
    seed: int
    #: A CSV file of your own copied into the channel instead of generated rows.
    data: Path | None = None
    hyperparameters: dict[str, HyperValue]
    gate: GateConfig
    promote: bool = True
    actor: str = "aib train"
    #: The production version when the run started (the new version's lineage parent).
    parent_version: int | None = None

    @classmethod
    def read(cls, run_dir: Path) -> RunParams:
        return cls.model_validate_json((run_dir / PARAMS_FILE).read_text(encoding="utf-8"))

    def write(self, run_dir: Path) -> None:
        (run_dir / PARAMS_FILE).write_text(self.model_dump_json(indent=2) + "\n", "utf-8")


def _write_json(path: Path, doc: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc + "\n", encoding="utf-8")


def prepare(run_dir: Path, params: RunParams, settings: PlatformSettings) -> None:
    """Write the training data into the train channel: generated rows, or the given file."""
    from aibackend.training.local import TRAINABLE

    channel = run_dir / CHANNEL
    channel.mkdir(parents=True, exist_ok=True)
    if params.data is not None:
        print(f"copying {params.data} into {channel}", flush=True)
        shutil.copyfile(params.data, channel / params.data.name)
        return
    print(
        f"preparing {params.rows} rows of {params.model} training data "
        f"(seed {params.seed}) in {channel}",
        flush=True,
    )
    TRAINABLE[params.model].prepare(channel, params.rows, params.seed)


def evaluate(run_dir: Path, params: RunParams, settings: PlatformSettings) -> None:
    """Score the candidate (and production, on the same holdout): every check's evidence."""
    from aibackend.adapters import model_registry
    from aibackend.training.gate import describe, run_gate

    print(f"validation gate for {params.model}:", flush=True)
    verdict = run_gate(
        model_registry(settings), run_dir / MODEL, params.gate, channel=run_dir / CHANNEL
    )
    for line in describe(verdict)[:-1]:
        print(f"  {line}", flush=True)
    _write_json(run_dir / EVALUATION / VERDICT_FILE, verdict.model_dump_json(indent=2))


def decide(verdict: GateVerdict) -> dict[str, Any]:
    """The gate's decision: approved unless a check failed (a check that cannot apply,
    `passed = None`, does not block). The state machine's Choice applies the same rule."""
    failed = [c.name for c in verdict.checks if c.passed is False]
    return {"approved": not failed, "failed": failed}


def gate(run_dir: Path, params: RunParams, settings: PlatformSettings) -> None:
    verdict = GateVerdict.model_validate_json(
        (run_dir / EVALUATION / VERDICT_FILE).read_text(encoding="utf-8")
    )
    decision = decide(verdict)
    if decision["approved"]:
        print(f"  approved ({len(verdict.checks)} checks, none failed)", flush=True)
    else:
        print(f"  rejected: {', '.join(decision['failed'])} failed", flush=True)
    _write_json(run_dir / GATE / DECISION_FILE, json.dumps(decision, indent=2))


def register(run_dir: Path, params: RunParams, settings: PlatformSettings) -> None:
    """Register the model folder as a candidate with its verdict, then act on the verdict."""
    from aibackend.adapters import model_registry
    from aibackend.training.local import act_on_verdict

    registry = model_registry(settings)
    verdict = GateVerdict.model_validate_json(
        (run_dir / EVALUATION / VERDICT_FILE).read_text(encoding="utf-8")
    )
    mv = registry.register(
        run_dir / MODEL, parent_version=params.parent_version, actor=params.actor
    )
    print(
        f"registered {mv.name} version {mv.version} (sha256 {mv.sha256[:12]}) as a candidate",
        flush=True,
    )
    mv = registry.record_gate(mv.name, mv.version, verdict)
    mv = act_on_verdict(registry, mv, promote=params.promote, actor=params.actor, echo=_say)
    _write_json(
        run_dir / REGISTERED / VERSION_FILE,
        json.dumps(
            {
                "model": mv.name,
                "version": mv.version,
                "stage": mv.stage,
                "approval": mv.approval.status,
            },
            indent=2,
        ),
    )


def _say(line: str) -> None:
    print(line, flush=True)


STEP_FUNCTIONS: dict[str, Callable[[Path, RunParams, PlatformSettings], None]] = {
    "prepare": prepare,
    "evaluate": evaluate,
    "gate": gate,
    "register": register,
}

_USAGE = (
    f"usage: python -m aibackend.training.step {{{','.join(STEP_FUNCTIONS)}}} RUN_FOLDER\n"
    f"RUN_FOLDER holds {PARAMS_FILE} (written by `aib train`)"
)


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 2 or args[0] not in STEP_FUNCTIONS:
        print(_USAGE, file=sys.stderr)
        return 2
    run_dir = Path(args[1])
    if not (run_dir / PARAMS_FILE).is_file():
        print(f"{run_dir}: no {PARAMS_FILE}; {_USAGE}", file=sys.stderr)
        return 2
    try:
        STEP_FUNCTIONS[args[0]](run_dir, RunParams.read(run_dir), PlatformSettings.from_env())
    except (AibError, OSError) as e:
        print(f"step {args[0]} failed: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
