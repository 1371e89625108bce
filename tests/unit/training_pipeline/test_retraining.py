"""The retraining trigger's logic: which models an event asks for, the cooldown, its state."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aibackend.errors import ConfigError
from aibackend.retraining import (
    CONFIG_ENV,
    DynamoRetrainState,
    RetrainConfig,
    RetrainPolicy,
    SqliteRetrainState,
    StepFunctionsStarter,
    Trigger,
    config_from_env,
    load_retrain_config,
    retrain,
    run_id_for,
    triggers_of,
)
from tests.conftest import ROOT
from tests.support import create_data_table

EVENTS = ROOT / "events"
HOUR = 3600.0
T0 = 1_800_000_000.0
CONFIG = RetrainConfig(
    models={
        "fraud": RetrainPolicy(cooldown_hours=24),
        "sentiment": RetrainPolicy(on=("drift",)),
        "recommendations": RetrainPolicy(enabled=False),
    }
)


class Starter:
    """Records what it started; fails while `fail` is set."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []
        self.fail = False
        self._lock = threading.Lock()

    def start(self, trigger: Trigger, run_id: str) -> str:
        if self.fail:
            raise OSError("cannot start")
        with self._lock:
            self.started.append((trigger.model, run_id))
        return f"local:{len(self.started)}"


def drift(event_id: str, model: str = "fraud") -> Trigger:
    return Trigger(model, "drift", event_id, "drift_share 0.6")


@pytest.fixture
def state(tmp_path: Path) -> SqliteRetrainState:
    return SqliteRetrainState(tmp_path / "retrain-state.db")


def test_two_alerts_inside_the_cooldown_start_one_run(state: SqliteRetrainState) -> None:
    starter = Starter()
    # GIVEN a drift alert that starts a run
    first = retrain(drift("e1"), CONFIG, state, starter, T0)
    # WHEN a performance alert for the same model comes an hour later
    second = retrain(Trigger("fraud", "performance", "e2"), CONFIG, state, starter, T0 + HOUR)
    # THEN only the first started a run; the second is suppressed until the cooldown ends
    assert first.outcome == "started" and first.until == T0 + 24 * HOUR
    assert second.outcome == "suppressed"
    assert second.until == T0 + 24 * HOUR and second.run_id == first.run_id
    assert "cooldown until 2027-01-16T08:00:00+00:00" in second.reason
    assert starter.started == [("fraud", first.run_id)]
    # AND both decisions are recorded, in order
    assert [d.outcome for d in state.decisions("fraud")] == ["started", "suppressed"]


def test_after_the_cooldown_a_new_alert_starts_a_new_run(state: SqliteRetrainState) -> None:
    starter = Starter()
    retrain(drift("e1"), CONFIG, state, starter, T0)
    # WHEN the next alert comes right after the cooldown ended
    later = retrain(drift("e3"), CONFIG, state, starter, T0 + 24 * HOUR)
    # THEN it starts its own run
    assert later.outcome == "started"
    assert [m for m, _ in starter.started] == ["fraud", "fraud"]


def test_a_redelivered_event_starts_nothing_twice(state: SqliteRetrainState) -> None:
    starter = Starter()
    retrain(drift("e1"), CONFIG, state, starter, T0)
    again = retrain(drift("e1"), CONFIG, state, starter, T0 + 5)
    assert again.outcome == "duplicate"
    assert len(starter.started) == 1


def test_models_have_their_own_cooldowns(state: SqliteRetrainState) -> None:
    starter = Starter()
    retrain(drift("e1", "fraud"), CONFIG, state, starter, T0)
    other = retrain(drift("e1", "sentiment"), CONFIG, state, starter, T0)
    assert other.outcome == "started"


def test_a_failed_start_gives_the_cooldown_back(state: SqliteRetrainState) -> None:
    starter = Starter()
    # GIVEN a start that fails
    starter.fail = True
    failed = retrain(drift("e1"), CONFIG, state, starter, T0)
    assert failed.outcome == "failed" and "cannot start" in failed.reason
    # WHEN the event is retried and the start works
    starter.fail = False
    retried = retrain(drift("e1"), CONFIG, state, starter, T0 + 60)
    # THEN it starts (the failed attempt holds no cooldown)
    assert retried.outcome == "started"


def test_the_policy_can_ignore_a_cause_or_a_model(state: SqliteRetrainState) -> None:
    starter = Starter()
    perf = retrain(Trigger("sentiment", "performance", "e1"), CONFIG, state, starter, T0)
    off = retrain(drift("e1", "recommendations"), CONFIG, state, starter, T0)
    unknown = retrain(drift("e1", "nope"), CONFIG, state, starter, T0)
    assert [perf.outcome, off.outcome, unknown.outcome] == ["ignored"] * 3
    assert "known: fraud, recommendations, sentiment" in unknown.reason
    assert starter.started == []


def test_concurrent_alerts_in_processes_sharing_the_table_start_one_run(tmp_path: Path) -> None:
    # GIVEN eight triggers with their own connections (as separate processes have)
    path = tmp_path / "retrain-state.db"
    states = [SqliteRetrainState(path) for _ in range(8)]
    starter = Starter()
    barrier = threading.Barrier(len(states))
    outcomes: list[str] = []

    def alert(i: int) -> None:
        barrier.wait()
        outcomes.append(retrain(drift(f"e{i}"), CONFIG, states[i], starter, T0).outcome)

    threads = [threading.Thread(target=alert, args=(i,)) for i in range(len(states))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # THEN exactly one started a run, the other seven were suppressed
    assert sorted(outcomes) == ["started"] + ["suppressed"] * 7
    assert len(starter.started) == 1


@mock_aws
def test_dynamodb_claims_are_conditional_writes() -> None:
    # GIVEN the retrain-state table as AibTraining makes it (partition key `id`)
    db = boto3.client("dynamodb", region_name="eu-west-1")
    create_data_table(db, "retrain-state")
    one, two = DynamoRetrainState("retrain-state", db), DynamoRetrainState("retrain-state", db)
    starter = Starter()
    # WHEN two triggers race for the same model
    a = retrain(drift("e1"), CONFIG, one, starter, T0)
    b = retrain(drift("e2"), CONFIG, two, starter, T0 + 1)
    # THEN the conditional write lets one through
    assert (a.outcome, b.outcome) == ("started", "suppressed")
    assert b.run_id == a.run_id and b.until == pytest.approx(T0 + 24 * HOUR)
    # AND after the cooldown the claim is free again
    assert retrain(drift("e3"), CONFIG, two, starter, T0 + 24 * HOUR).outcome == "started"
    # AND the decisions are kept, oldest first
    assert [d.outcome for d in one.decisions("fraud")] == ["started", "suppressed", "started"]


@mock_aws
def test_the_aws_starter_starts_the_models_state_machine() -> None:
    # GIVEN the fraud state machine
    sfn = boto3.client("stepfunctions", region_name="eu-west-1")
    iam = boto3.client("iam", region_name="eu-west-1")
    role = iam.create_role(RoleName="sm", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    arn = sfn.create_state_machine(
        name="aib-training-fraud",
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
        roleArn=role,
    )["stateMachineArn"]
    prefix = arn.removesuffix("fraud")
    starter = StepFunctionsStarter(prefix, client=sfn)
    # WHEN a drift alert starts it
    trigger = drift("3f1a2b4c-5d6e-4f70-8a9b-0c1d2e3f4a01")
    handle = starter.start(trigger, run_id_for(trigger))
    # THEN an execution named after the run carries the cause
    execution = sfn.describe_execution(executionArn=handle)
    assert execution["name"] == "fraud-drift-3f1a2b4c-5d6e-4f70-8a9b-0c1d2e3f4a01"
    assert json.loads(execution["input"])["cause"] == "drift"


def test_the_aws_starter_needs_the_state_machine_prefix() -> None:
    with pytest.raises(ConfigError, match="TRAINING_STATE_MACHINE_ARN_PREFIX"):
        StepFunctionsStarter.from_env({})


def _event(path: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / path).read_text())
    return data


def test_findings_name_their_model_and_a_schedule_every_scheduled_one() -> None:
    drift_event = _event("eventbridge/monitor_model_drift_detected.json")
    (t,) = triggers_of(drift_event, CONFIG)
    assert (t.model, t.cause, t.event_id) == ("fraud", "drift", drift_event["id"])
    assert "drift_share 0.6 (threshold 0.5)" in t.reason
    perf = triggers_of(_event("eventbridge/monitor_model_performance_degraded.json"), CONFIG)
    assert [(x.model, x.cause) for x in perf] == [("fraud", "performance")]
    # AND the weekly schedule asks for every model whose policy lists `schedule`
    scheduled = triggers_of(_event("schedule/retrain_trigger.json"), CONFIG)
    assert [(x.model, x.cause) for x in scheduled] == [
        ("fraud", "schedule"),
        ("recommendations", "schedule"),
    ]


def test_another_event_is_refused_naming_what_is_accepted() -> None:
    with pytest.raises(ConfigError, match="accepted: Model Drift Detected"):
        triggers_of({"id": "x", "detail-type": "Bias Detected", "detail": {}}, CONFIG)


def test_run_ids_are_valid_execution_names() -> None:
    rid = run_id_for(Trigger("iot_thermostat", "schedule", "a/b:c" * 30))
    assert len(rid) <= 80 and rid.startswith("iot_thermostat-schedule-a-b-c")
    assert set(rid) <= set("abcdefghijklmnopqrstuvwxyz0123456789-_ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def test_policies_load_from_training_toml_and_travel_as_json(tmp_path: Path) -> None:
    # GIVEN a section for one model
    (tmp_path / "training.toml").write_text('[retrain.fraud]\ncooldown_hours = 6\non = ["drift"]\n')
    config = load_retrain_config(tmp_path, ["fraud", "sentiment"])
    # THEN it applies to that model, defaults to the other
    assert config.models["fraud"].cooldown_s == 6 * HOUR
    assert config.models["sentiment"] == RetrainPolicy()
    # AND CDK's JSON of it reads back the same
    assert config_from_env({CONFIG_ENV: config.model_dump_json()}) == config
    assert config_from_env({}) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[retrain.nope]\n", "no trainable model 'nope'"),
        ("[retrain.fraud]\ncooldown_hours = 0\n", "retrain.fraud.cooldown_hours"),
        ('[retrain.fraud]\non = ["labels"]\n', "retrain.fraud.on"),
        ("[retrain.fraud]\ncooldown = 1\n", "retrain.fraud.cooldown"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "training.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_retrain_config(tmp_path, ["fraud"])
