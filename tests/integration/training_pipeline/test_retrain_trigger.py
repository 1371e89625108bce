"""The retraining trigger under the local runtime: a drift finding starts one local training
pipeline run; another finding inside the cooldown starts none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aibackend.ports import PutEvent
from aibackend.retraining import SqliteRetrainState
from aibackend.training.pipeline_local import RECORD_FILE
from tests.support import ROOT, running_runtime, wait_for

DRIFT = json.loads((ROOT / "events/eventbridge/monitor_model_drift_detected.json").read_text())
DEGRADED = json.loads(
    (ROOT / "events/eventbridge/monitor_model_performance_degraded.json").read_text()
)


def _put(rt: Any, event: dict[str, Any]) -> None:
    result = rt.bus.put_events(
        [PutEvent(source=event["source"], detail_type=event["detail-type"], detail=event["detail"])]
    )
    assert result.failed_count == 0


def _finished_runs(state: Path) -> list[dict[str, Any]]:
    records = [json.loads(p.read_text()) for p in state.glob(f"training/fraud-*/{RECORD_FILE}")]
    return [r for r in records if r["status"] != "running"]


@pytest.mark.slow
def test_a_drift_finding_starts_one_local_pipeline_run(
    trigger_functions: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    with running_runtime(trigger_functions, state) as rt:
        # GIVEN the monitor finds drift for fraud
        _put(rt, DRIFT)
        # WHEN the trigger has decided
        decisions = SqliteRetrainState(state / "tables" / "retrain-state.db")
        (started,) = wait_for(lambda: decisions.decisions("fraud"), timeout=20)
        # THEN it started a run in a detached process
        assert started.outcome == "started" and (started.handle or "").startswith("local:")
        # AND a performance finding inside the cooldown starts none, recorded with its end
        _put(rt, DEGRADED)
        wait_for(lambda: len(decisions.decisions("fraud")) == 2, timeout=20)
        suppressed = decisions.decisions("fraud")[1]
        assert suppressed.outcome == "suppressed" and suppressed.until == started.until
        assert suppressed.reason.startswith("cooldown until ")
        # AND the started run goes through the five steps, each recorded with its exit code
        (record,) = wait_for(lambda: _finished_runs(state), timeout=90)
    assert record["status"] == "succeeded", record
    assert [(s["name"], s["exit_code"]) for s in record["steps"]] == [
        ("prepare", 0),
        ("train", 0),
        ("evaluate", 0),
        ("gate", 0),
        ("register", 0),
    ]
    log = (state / "training" / f"{started.run_id}.log").read_text()
    assert "[5/5] register" in log and "preparing 2000 rows of fraud" in log
    assert len(list(state.glob("training/fraud-*/"))) == 1
