"""Canary state in the registry: one contract, SQLite locally and DynamoDB (moto) on AWS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from aibackend.adapters.aws import DynamoModelRegistry, S3ObjectStore
from aibackend.adapters.base import PromotionRefusedError, RegistryConflictError
from aibackend.adapters.local import LocalObjectStore, SqliteModelRegistry
from aibackend.ports import CanaryCheck, CanaryCriteria, GateCheck, GateVerdict, ModelRegistry
from tests.support import create_registry_table

BUCKET = "models"
TABLE = "aib-model-registry"


def _dynamo_registry() -> DynamoModelRegistry:
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    ddb = boto3.client("dynamodb", region_name="eu-west-1")
    create_registry_table(ddb, TABLE)
    return DynamoModelRegistry(TABLE, S3ObjectStore(BUCKET, client=s3), client=ddb)


@pytest.fixture(params=["local", "aws"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModelRegistry]:
    if request.param == "local":
        yield SqliteModelRegistry(
            tmp_path / "registry.db", LocalObjectStore(tmp_path / "bucket", bucket=BUCKET)
        )
        return
    with mock_aws():
        yield _dynamo_registry()


def _approve(registry: ModelRegistry, version: int) -> None:
    check = GateCheck(name="threshold:roc_auc", passed=True, value=0.9, threshold=0.85)
    verdict = GateVerdict(approved=True, checks=(check,), evaluated_at=datetime.now(UTC))
    registry.record_gate("fraud", version, verdict)


@pytest.fixture
def champion_and_candidate(
    registry: ModelRegistry, tiny_model_factory: Callable[..., Path], tmp_path: Path
) -> ModelRegistry:
    """GIVEN fraud v1 in production and v2 approved by the gate, staged."""
    for i in range(2):
        registry.register(tiny_model_factory(tmp_path / str(i), name="fraud", weights=(1.0, i)))
    registry.promote("fraud", 1, actor="ana", reason="first")
    _approve(registry, 2)
    registry.set_stage("fraud", 2, "staging", actor="gate", reason="approved")
    return registry


def test_a_canary_is_recorded_beside_production_and_blocks_other_pointer_moves(
    champion_and_candidate: ModelRegistry,
) -> None:
    reg = champion_and_candidate
    # WHEN a canary of v2 starts
    criteria = CanaryCriteria(min_requests=5)
    canary = reg.start_canary(
        "fraud", 2, actor="bo", reason="fresher data", percent=20, window_s=60, criteria=criteria
    )
    # THEN it reads back with its champion, share, window and criteria; production is still v1
    assert reg.canary("fraud") == canary
    assert (canary.candidate, canary.champion, canary.percent, canary.mode) == (2, 1, 20, "canary")
    assert canary.criteria.min_requests == 5
    assert reg.production("fraud").version == 1  # type: ignore[union-attr]
    # AND the trail has a canary_started event carrying the canary
    last = reg.history("fraud")[-1]
    assert (last.action, last.version, last.actor, last.canary) == (
        "canary_started",
        2,
        "bo",
        canary,
    )
    # AND a second canary, a direct promotion and a rollback are refused, naming the way out
    with pytest.raises(PromotionRefusedError, match=r"a canary of v2 is running.*--abort"):
        reg.start_canary("fraud", 2, actor="bo", reason="again")
    with pytest.raises(PromotionRefusedError, match=r"canary fraud --abort"):
        reg.promote("fraud", 2, actor="bo", reason="skip it")
    with pytest.raises(PromotionRefusedError, match="a canary of v2 is running"):
        reg.rollback("fraud", actor="bo", reason="undo")


def test_a_passed_canary_promotes_the_candidate_with_its_evidence(
    champion_and_candidate: ModelRegistry,
) -> None:
    reg = champion_and_candidate
    canary = reg.start_canary("fraud", 2, actor="bo", reason="fresher data")
    evidence = (CanaryCheck(name="error_rate_delta", passed=True, value=0.0, threshold=0.02),)
    # WHEN the canary ends passed
    mv = reg.end_canary(
        "fraud", passed=True, actor="aib-dev", reason="window over", evidence=evidence
    )
    # THEN v2 is production, v1 archived (and what a rollback returns to), no canary remains
    assert (mv.version, mv.stage) == (2, "production")
    assert reg.get("fraud", 1).stage == "archived"
    assert reg.canary("fraud") is None
    # AND the trail records canary_passed with the evidence, then the promotion
    trail = reg.history("fraud")[-3:]
    assert [(e.version, e.action) for e in trail] == [
        (2, "canary_passed"),
        (2, "promoted"),
        (1, "archived"),
    ]
    assert trail[0].evidence == evidence and trail[0].canary == canary
    assert reg.rollback("fraud", actor="bo", reason="after all").version == 1


def test_a_failed_canary_keeps_production_and_rejects_the_candidate_with_the_breach(
    champion_and_candidate: ModelRegistry,
) -> None:
    reg = champion_and_candidate
    reg.start_canary("fraud", 2, actor="bo", reason="fresher data", mode="shadow")
    breach = CanaryCheck(
        name="score_drift",
        passed=False,
        value=0.8,
        threshold=0.1,
        champion_samples=300,
        candidate_samples=40,
    )
    # WHEN the canary ends failed
    mv = reg.end_canary(
        "fraud", passed=False, actor="aib-dev", reason="score_drift: 0.8", evidence=(breach,)
    )
    # THEN v1 stays production; v2 is archived and rejected by the canary
    assert mv.version == 1 and reg.canary("fraud") is None
    v2 = reg.get("fraud", 2)
    assert (v2.stage, v2.approval.status, v2.approval.by) == ("archived", "rejected", "canary")
    # AND the rolled_back event names the breach: criterion, value, threshold, sample sizes
    last = reg.history("fraud")[-1]
    assert (last.action, last.version, last.to_stage) == ("rolled_back", 2, "archived")
    assert "score_drift: 0.8" in last.reason and last.evidence == (breach,)
    # AND starting another canary of the rejected v2 needs --force
    with pytest.raises(PromotionRefusedError, match=r"not approved.*--force"):
        reg.start_canary("fraud", 2, actor="bo", reason="retry")


def test_refused_starts_say_what_to_do(
    registry: ModelRegistry, tiny_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    registry.register(tiny_model_factory(tmp_path / "a", name="fraud"))
    # GIVEN no production version: nothing to compare with
    with pytest.raises(PromotionRefusedError, match="promote it directly"):
        registry.start_canary("fraud", 1, actor="bo", reason="first")
    registry.promote("fraud", 1, actor="bo", reason="first")
    registry.register(tiny_model_factory(tmp_path / "b", name="fraud"))
    # GIVEN v2 still pending (the gate has not run)
    with pytest.raises(PromotionRefusedError, match=r"v2 is not approved .*pending"):
        registry.start_canary("fraud", 2, actor="bo", reason="try")
    with pytest.raises(PromotionRefusedError, match="v1 is production already"):
        registry.start_canary("fraud", 1, actor="bo", reason="try")
    # AND ending a canary that does not exist names how to start one
    with pytest.raises(PromotionRefusedError, match=r"no active canary.*--canary"):
        registry.end_canary("fraud", passed=True, actor="bo", reason="done")
    # AND a forced start needs a reason
    with pytest.raises(PromotionRefusedError, match="needs a reason"):
        registry.start_canary("fraud", 2, actor="bo", reason=" ", force=True)
    assert registry.canary("fraud") is None


def test_a_canary_ends_once_even_when_two_judges_race(
    champion_and_candidate: ModelRegistry,
) -> None:
    reg = champion_and_candidate
    reg.start_canary("fraud", 2, actor="bo", reason="fresher data")
    base = reg
    # GIVEN a judge that read the canary, then another one ended it and a new one started
    stale = base._get_pointer("fraud")  # type: ignore[attr-defined]
    reg.end_canary("fraud", passed=False, actor="one", reason="breach")
    _approve(reg, 2)
    reg.start_canary("fraud", 2, actor="bo", reason="again")
    # WHEN the first judge applies its end computed from the old canary
    from aibackend.adapters.base import PointerChange, Transition

    change = PointerChange(1, stale.model_copy(update={"canary": None}), stale.canary.id)
    # THEN it is refused as a conflict and the new canary is untouched
    with pytest.raises(RegistryConflictError):
        base._apply(Transition("fraud", {}, (), change))  # type: ignore[attr-defined]
    assert reg.canary("fraud").reason == "again"  # type: ignore[union-attr]


# --- the CLI: aib models promote --canary, aib models canary, list and show -------------


def test_the_cli_starts_shows_refuses_and_aborts_a_canary(
    tiny_model_factory: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aibackend.adapters import model_registry
    from aibackend.adapters.local_bus import LocalEventBus
    from aibackend.cli import main
    from aibackend.settings import PlatformSettings

    monkeypatch.setenv("AIB_STATE_DIR", ".aib")  # `--state-dir` sets it; undone after the test
    state = tmp_path / "state"
    reg = model_registry(PlatformSettings(state_dir=state))
    for i in range(2):
        reg.register(tiny_model_factory(tmp_path / str(i), name="fraud", weights=(1.0, i)))
    reg.promote("fraud", 1, actor="ana", reason="first")
    _approve(reg, 2)

    def aib(*args: str) -> int:
        return main(["--state-dir", str(state), "models", *args])

    # WHEN v2 is promoted with a 20% canary for 90 s
    assert aib("promote", "fraud", "2", "--canary", "--percent", "20", "--window", "90s",
               "--reason", "fresher data", "--actor", "bo") == 0  # fmt: skip
    assert "canary of v2 started beside v1: the candidate answers 20%" in capsys.readouterr().out
    # THEN the Model Version Approved event says canary, 20%, 2 minutes (90 s rounded up)
    bus = LocalEventBus(state / "events.db", deliver=lambda *_: None)
    [event] = bus.archived(detail_type="Model Version Approved")
    assert event["source"] == "aib.registry"
    assert {k: event["detail"][k] for k in ("mode", "percent", "window_minutes", "actor")} == {
        "mode": "canary",
        "percent": 20,
        "window_minutes": 2,
        "actor": "bo",
    }
    # AND list and canary show it; without `aib dev` there are no observations yet
    assert aib("list") == 0
    assert (
        "fraud: canary of v2 beside v1 (20%): `aib models canary fraud`" in capsys.readouterr().out
    )
    assert aib("canary", "fraud") == 0
    status = capsys.readouterr().out
    assert "canary of v2 beside v1, 20%" in status and "is `aib dev` running?" in status
    # AND a direct promotion is refused, naming the way out, and --percent needs --canary
    assert aib("promote", "fraud", "2", "--reason", "now") == 1
    assert "aib models canary fraud --abort" in capsys.readouterr().err
    assert aib("promote", "fraud", "2", "--percent", "5", "--reason", "now") == 2
    # WHEN it is aborted THEN production stays v1 and the trail shows the start and the end
    assert aib("canary", "fraud", "--abort") == 2  # needs a reason
    assert aib("canary", "fraud", "--abort", "--reason", "wrong data") == 0
    assert "v1 stays production" in capsys.readouterr().out
    assert aib("show", "fraud") == 0
    trail = capsys.readouterr().out.split("audit trail:")[1]
    assert "v2  canary_started  by bo: canary of 20% for 90 s beside v1: fresher data" in trail
    assert "v2  rolled_back candidate -> archived" in trail and "aborted: wrong data" in trail
    assert [e["detail"]["mode"] for e in bus.archived(detail_type="Model Version Approved")] == [
        "canary"
    ]
