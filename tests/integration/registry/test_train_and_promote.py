"""`aib train` through the validation gate, then `aib models` promote, show and rollback."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from aibackend.adapters import model_registry
from aibackend.cli import main
from aibackend.settings import PlatformSettings
from aibackend.training.local import train_local

from .conftest import training_data

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _restore_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIB_STATE_DIR", ".aib")  # `--state-dir` sets it; undone after each test


def _shuffled_labels(source: Path, dest: Path, rows: int = 8_000) -> Path:
    """The first `rows` transactions with `is_fraud` permuted: nothing left to learn."""
    with source.open(newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))
    header, body = lines[0], lines[1 : rows + 1]
    j = header.index("is_fraud")
    labels = np.random.default_rng(5).permutation([r[j] for r in body])
    for r, label in zip(body, labels, strict=True):
        r[j] = str(label)
    with dest.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *body])
    return dest


def _aib(state: Path, *args: str) -> int:
    return main(["--state-dir", str(state), *args])


def test_a_candidate_trained_on_shuffled_labels_is_rejected_with_its_failing_checks(
    fraud_registry_state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN training data whose labels were shuffled
    data = _shuffled_labels(training_data(fraud_registry_state), tmp_path / "shuffled.csv")
    # WHEN `aib train fraud --data` trains a candidate on it
    assert _aib(fraud_registry_state, "train", "fraud", "--data", str(data)) == 1
    out = capsys.readouterr().out
    # THEN the gate rejects it for its absolute metrics, and it stays a candidate (against
    # production it cannot lose by much: on a shuffled holdout every model is at chance)
    assert "FAIL threshold:roc_auc" in out and "FAIL threshold:pr_auc" in out
    assert "REJECTED by the gate" in out
    registry = model_registry(PlatformSettings(state_dir=fraud_registry_state))
    mv = registry.get("fraud", 2)
    assert (mv.stage, mv.approval.status) == ("candidate", "rejected")
    assert mv.lineage.parent_version == 1
    assert {c.name for c in mv.gate.failed} >= {"threshold:roc_auc", "threshold:pr_auc"}  # type: ignore[union-attr]
    assert registry.production("fraud").version == 1  # type: ignore[union-attr]
    # AND promoting it is refused unless forced
    assert _aib(fraud_registry_state, "models", "promote", "fraud", "2", "--reason", "x") == 1
    assert "was rejected by gate" in capsys.readouterr().err


def test_a_weaker_model_on_the_same_data_loses_to_production_on_the_same_holdout(
    fraud_registry_state: Path,
) -> None:
    # GIVEN v1's own training data and hyperparameters that leave the trees barely grown
    settings = PlatformSettings(state_dir=fraud_registry_state)
    stump = {"max_iter": 3, "max_leaf_nodes": 2, "early_stopping": False}
    # WHEN the gate judges the candidate trained with them
    mv = train_local(
        "fraud",
        settings,
        data=training_data(fraud_registry_state),
        hyperparameters=stump,
        echo=lambda _: None,
    )
    # THEN it is rejected for losing to production on the candidate's holdout (v1 was scored
    # there too), with both AUCs in the evidence, and stays a candidate
    assert (mv.stage, mv.approval.status) == ("candidate", "rejected")
    assert mv.gate is not None and "beats_production" in {c.name for c in mv.gate.failed}
    check = next(c for c in mv.gate.checks if c.name == "beats_production")
    assert check.value is not None and check.value < -0.002
    assert "candidate 0." in check.detail and "production 0.9" in check.detail
    assert mv.gate.compared_with == 1 and mv.gate.holdout_rows == 4_000
    # AND the bias check ran on both sensitive columns of the training data
    bias = {c.name: c for c in mv.gate.checks if c.name.startswith("bias:")}
    assert set(bias) == {"bias:customer_age_band", "bias:region"}
    assert all("column" not in c.detail for c in bias.values())


def test_an_equal_candidate_passes_to_staging_then_is_promoted_shown_and_rolled_back(
    fraud_registry_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a retrain on v1's own data (an equal model)
    data = training_data(fraud_registry_state)
    # WHEN it is trained
    assert _aib(fraud_registry_state, "train", "fraud", "--data", str(data)) == 0
    out = capsys.readouterr().out
    version = int(out.split("registered fraud version ")[1].split()[0])
    # THEN the gate approves it on the same holdout as production, and it waits in staging
    assert "PASS beats_production 0.0000" in out and "PASS input_schema" in out
    assert f"fraud v{version} approved: staging" in out
    # WHEN it is promoted with a reason
    assert (
        _aib(
            fraud_registry_state,
            "models",
            "promote",
            "fraud",
            str(version),
            "--reason",
            "retrained",
            "--actor",
            "ana",
        )
        == 0
    )
    # THEN `list` shows it in production and v1 archived, with the approval and key metric
    assert _aib(fraud_registry_state, "models", "list") == 0
    listing = capsys.readouterr().out
    assert f"* fraud v{version}  production approved" in listing
    assert "  fraud v1  archived   approved" in listing and "roc_auc=0.9" in listing
    # WHEN production is rolled back
    assert (
        _aib(
            fraud_registry_state,
            "models",
            "rollback",
            "fraud",
            "--reason",
            "alarms",
            "--actor",
            "bo",
        )
        == 0
    )
    assert f"rolled back v{version} -> v1" in capsys.readouterr().out
    # THEN `show` prints the lineage, the gate evidence and the audit trail in time order
    assert _aib(fraud_registry_state, "models", "show", "fraud", "--version", str(version)) == 0
    shown = capsys.readouterr().out
    assert f"fraud v{version}: archived, approval approved by gate" in shown
    assert "parent_version: 1" in shown and "data_fingerprint: " in shown
    trail = shown.split("audit trail:")[1]
    order = [
        "v1  registered",
        "v1  promoted candidate -> production  by aib train",
        f"v{version}  gate",
        f"v{version}  stage candidate -> staging",
        f"v{version}  promoted staging -> production  by ana: retrained",
        "v1  archived production -> archived",
        "v1  rolled_back archived -> production  by bo: alarms",
        f"v{version}  archived production -> archived  by bo: replaced by v1: alarms",
    ]
    positions = [trail.index(line) for line in order]
    assert positions == sorted(positions)
