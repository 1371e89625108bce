"""The local step runner: each step its own process, a run record, a failing step stops it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aibackend.settings import PlatformSettings
from aibackend.training.common import TrainingError
from aibackend.training.gate import GateConfig
from aibackend.training.pipeline import pipeline_spec
from aibackend.training.pipeline_local import RECORD_FILE, RunRecord, run_pipeline, settings_env
from aibackend.training.step import PARAMS_FILE, RunParams, main
from tests.conftest import ROOT


def _params(entry_point: str) -> RunParams:
    return RunParams(
        model="iot_thermostat",
        entry_point=entry_point,
        rows=300,
        seed=1,
        hyperparameters={},
        gate=GateConfig(),
    )


def test_a_failing_step_stops_the_run_with_its_output_and_a_record(tmp_path: Path) -> None:
    # GIVEN a pipeline whose train step cannot run (its entry point does not exist)
    spec = pipeline_spec("iot_thermostat", ROOT / "functions")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lines: list[str] = []
    settings = PlatformSettings(state_dir=tmp_path / "state")
    # WHEN the run goes
    with pytest.raises(TrainingError) as failed:
        run_pipeline(
            spec, _params("aibackend.training.no_such_entry"), settings, run_dir, echo=lines.append
        )
    # THEN the error names the step, its exit code, its log, and quotes its output
    message = str(failed.value)
    assert "step 2/5 train exited with 1" in message
    assert "No module named aibackend.training.no_such_entry" in message
    # AND the record says prepare succeeded, train failed, the rest never ran
    record = RunRecord.read(run_dir)
    assert record.status == "failed"
    assert [(s.name, s.status, s.exit_code) for s in record.steps] == [
        ("prepare", "succeeded", 0),
        ("train", "failed", 1),
        ("evaluate", "skipped", None),
        ("gate", "skipped", None),
        ("register", "skipped", None),
    ]
    assert "No module named" in Path(record.steps[1].log or "").read_text()
    # AND prepare's output is in the run folder, progress was shown step by step
    assert list((run_dir / "input" / "data" / "train").iterdir())
    assert [x.split(" (")[0] for x in lines if x.startswith("[")] == [
        "[1/5] prepare",
        "[2/5] train",
    ]
    assert json.loads((run_dir / RECORD_FILE).read_text())["error"].startswith("step 2/5 train")


def test_a_step_process_refuses_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an unknown step, and a folder without the run's parameters
    assert main(["train", str(tmp_path)]) == 2
    assert main(["gate", str(tmp_path)]) == 2
    # THEN each says what it expects
    err = capsys.readouterr().err
    assert "usage: python -m aibackend.training.step {prepare,evaluate,gate,register}" in err
    assert f"no {PARAMS_FILE}" in err


def test_children_get_absolute_state_folders(tmp_path: Path) -> None:
    # GIVEN relative settings (steps run inside the run folder)
    env = settings_env(PlatformSettings(state_dir=Path(".aib")))
    # THEN the variables they read name absolute folders
    assert Path(env["AIB_STATE_DIR"]).is_absolute()
    assert env["AIB_ADAPTERS"] == "local"
