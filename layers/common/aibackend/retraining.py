"""The retraining trigger: start a model's training pipeline on a monitoring finding or a
schedule, at most once per cooldown.

`functions/retrain_trigger` receives `Model Drift Detected` / `Model Performance Degraded`
(one model each) and a scheduled event (every model whose policy lists `schedule`), and calls
`retrain` once per model. A model's policy (`[retrain.<model>]` of `functions/training.toml`)
sets its cooldown: the first trigger claims the model until `now + cooldown` in the
`retrain-state` table, with a conditional write (SQLite `INSERT ... ON CONFLICT ... WHERE`
locally, a DynamoDB `ConditionExpression` on AWS), so of two concurrent alerts exactly one
starts a run; the others are recorded as suppressed, with the time the cooldown ends.

Starting goes through `PipelineStarter`: locally a detached `aib train <model>` process (the
step runner of `aibackend.training.pipeline_local`), on AWS `states:StartExecution` on the
model's state machine (`aib-training-<model>`, built by `infra/stacks/training.py`).

This module is in the common layer, not under `training/`: that package never ships to
Lambda, and this one runs there.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aibackend.errors import ConfigError
from aibackend.settings import PlatformSettings, physical_name
from aibackend.training_config import config_path, sections, validated

Cause = Literal["drift", "performance", "schedule"]
#: EventBridge detail-types (source `aib.monitoring`) the trigger acts on.
FINDINGS: dict[str, Cause] = {
    "Model Drift Detected": "drift",
    "Model Performance Degraded": "performance",
}
SCHEDULED = "Scheduled Event"
TABLE = "retrain-state"
#: The trigger function's variable holding the policies as JSON (CDK writes it from
#: `training.toml`, which is not part of the function's bundle).
CONFIG_ENV = "RETRAIN_CONFIG"
#: Name of a model's state machine on AWS.
STATE_MACHINE_PREFIX = "aib-training-"
#: How long a decision stays in the table (DynamoDB TTL).
DECISION_RETENTION_S = 90 * 86_400


class RetrainPolicy(BaseModel):
    """`[retrain.<model>]`: when a model may be retrained automatically."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    #: After a run starts, triggers for the model are suppressed for this long.
    cooldown_hours: Annotated[float, Field(gt=0, le=24 * 90)] = 24.0
    #: What may start a run: monitoring findings and/or the trigger's schedule.
    on: tuple[Cause, ...] = ("drift", "performance", "schedule")

    @property
    def cooldown_s(self) -> float:
        return self.cooldown_hours * 3600.0


class RetrainConfig(BaseModel):
    """Every retrainable model's policy (the trainable ones; defaults unless configured)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: dict[str, RetrainPolicy]


def load_retrain_config(functions_dir: Path, models: Iterable[str]) -> RetrainConfig:
    """`[retrain.<model>]` of `training.toml` over the defaults, for each of `models` (the
    trainable ones). A section for another model, or an invalid key, is a `ConfigError`."""
    path, found = config_path(functions_dir), sections(functions_dir, "retrain")
    names = sorted(models)
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise ConfigError(
            f"{path}: [retrain.{unknown[0]}]: no trainable model {unknown[0]!r}; "
            f"known: {', '.join(names)}"
        )
    return RetrainConfig(
        models={
            n: validated(RetrainPolicy, found.get(n, {}), key=f"retrain.{n}", path=path)
            for n in names
        }
    )


def config_from_env(env: Mapping[str, str] | None = None) -> RetrainConfig | None:
    """The policies CDK wrote into `RETRAIN_CONFIG`, or None when it is not set."""
    raw = (os.environ if env is None else env).get(CONFIG_ENV)
    if not raw:
        return None
    try:
        return RetrainConfig.model_validate_json(raw)
    except ValidationError as e:
        raise ConfigError(f"{CONFIG_ENV}: not a retraining configuration ({e})") from e


# --- what an event asks for -----------------------------------------------------------------


@dataclass(frozen=True)
class Trigger:
    """One model asked to retrain, by one event."""

    model: str
    cause: Cause
    event_id: str
    #: The finding's test and statistic, for the run's record (empty for a schedule).
    reason: str = ""


def triggers_of(event: Mapping[str, Any], config: RetrainConfig) -> list[Trigger]:
    """The models an EventBridge event asks to retrain: the finding's model, or for a
    scheduled event every model whose policy lists `schedule`. Anything else is a
    `ConfigError` naming what the trigger accepts."""
    detail_type = str(event.get("detail-type", ""))
    event_id = str(event.get("id", ""))
    if detail_type == SCHEDULED:
        return [
            Trigger(model, "schedule", event_id, "scheduled retraining")
            for model, policy in sorted(config.models.items())
            if "schedule" in policy.on
        ]
    cause = FINDINGS.get(detail_type)
    if cause is None:
        accepted = ", ".join([*FINDINGS, SCHEDULED])
        raise ConfigError(f"retrain trigger: detail-type {detail_type!r}; accepted: {accepted}")
    detail = event.get("detail") or {}
    model = str(detail.get("model", ""))
    test, statistic, threshold = (detail.get(k) for k in ("test", "statistic", "threshold"))
    reason = f"{detail_type}: {test} {statistic} (threshold {threshold})"
    return [Trigger(model, cause, event_id, reason)]


# --- decisions ------------------------------------------------------------------------------

Outcome = Literal["started", "suppressed", "duplicate", "ignored", "failed"]


@dataclass(frozen=True)
class Decision:
    """What the trigger did for one model and why; recorded in the state table."""

    model: str
    cause: Cause
    outcome: Outcome
    reason: str
    at: float
    run_id: str | None = None
    #: When the cooldown that suppressed (or that this run started) ends, epoch seconds.
    until: float | None = None
    #: The started run: `local:<pid>` or a Step Functions execution ARN.
    handle: str | None = None

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        if self.until is not None:
            doc["until_iso"] = datetime.fromtimestamp(self.until, UTC).isoformat()
        return doc


@dataclass(frozen=True)
class Hold:
    """The run holding a model's cooldown."""

    run_id: str
    until: float


class RetrainState(Protocol):
    def claim(self, model: str, run_id: str, now: float, cooldown_s: float) -> Hold | None:
        """Take `model`'s cooldown for `run_id` until `now + cooldown_s` when it is free or
        expired (one conditional write): None when taken, else the run that holds it."""
        ...

    def release(self, model: str, run_id: str) -> None:
        """Give back `run_id`'s claim (its run could not start), if it still holds it."""
        ...

    def record(self, decision: Decision) -> None: ...

    def decisions(self, model: str) -> list[Decision]:
        """Recorded decisions for `model`, oldest first."""
        ...


class PipelineStarter(Protocol):
    def start(self, trigger: Trigger, run_id: str) -> str:
        """Start `trigger.model`'s training pipeline as run `run_id`; returns its handle."""
        ...


def run_id_for(trigger: Trigger) -> str:
    """A name unique per event and model (Step Functions execution names: 80 characters of
    letters, digits, `-` and `_`); a redelivered event gets the same one."""
    event = re.sub(r"[^A-Za-z0-9_-]", "-", trigger.event_id)[:40] or "manual"
    return f"{trigger.model}-{trigger.cause}-{event}"[:80]


def retrain(
    trigger: Trigger,
    config: RetrainConfig,
    state: RetrainState,
    starter: PipelineStarter,
    now: float,
) -> Decision:
    """Start `trigger.model`'s pipeline unless its policy or cooldown says no; record why."""
    decision = _decide(trigger, config, state, starter, now)
    state.record(decision)
    return decision


def _decide(
    trigger: Trigger,
    config: RetrainConfig,
    state: RetrainState,
    starter: PipelineStarter,
    now: float,
) -> Decision:
    def decision(outcome: Outcome, reason: str, **kw: Any) -> Decision:
        return Decision(trigger.model, trigger.cause, outcome, reason, now, **kw)

    policy = config.models.get(trigger.model)
    if policy is None:
        known = ", ".join(sorted(config.models)) or "none"
        return decision("ignored", f"no training pipeline for {trigger.model!r} (known: {known})")
    if not policy.enabled or trigger.cause not in policy.on:
        return decision("ignored", f"retrain.{trigger.model} does not retrain on {trigger.cause}")
    run_id = run_id_for(trigger)
    hold = state.claim(trigger.model, run_id, now, policy.cooldown_s)
    if hold is not None and hold.run_id == run_id:
        return decision("duplicate", "this event already started its run", run_id=run_id)
    if hold is not None:
        ends = datetime.fromtimestamp(hold.until, UTC).isoformat()
        return decision(
            "suppressed",
            f"cooldown until {ends} (run {hold.run_id}); {trigger.reason}",
            run_id=hold.run_id,
            until=hold.until,
        )
    try:
        handle = starter.start(trigger, run_id)
    except Exception as e:  # the starter's errors are the adapter's (boto3, OSError)
        state.release(trigger.model, run_id)
        return decision("failed", f"could not start the pipeline: {e}", run_id=run_id)
    return decision(
        "started", trigger.reason, run_id=run_id, until=now + policy.cooldown_s, handle=handle
    )


# --- state adapters ---------------------------------------------------------------------------


def retrain_state(settings: PlatformSettings, table: str = TABLE) -> RetrainState:
    if settings.adapters == "aws":
        return DynamoRetrainState(physical_name("table", table))
    return SqliteRetrainState(settings.state_dir / "tables" / f"{table}.db")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS cooldowns (
  model TEXT PRIMARY KEY, run_id TEXT NOT NULL, until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, doc TEXT NOT NULL
);
"""


class SqliteRetrainState:
    """SQLite in WAL mode; each write one `BEGIN IMMEDIATE` transaction, so concurrent
    processes (or threads) serialize on the claim."""

    def __init__(self, path: Path) -> None:
        from aibackend.adapters.local import connect

        self.path = path
        self._conn = connect(path)
        self._lock = threading.Lock()
        self._conn.executescript(_SCHEMA)

    def claim(self, model: str, run_id: str, now: float, cooldown_s: float) -> Hold | None:
        from aibackend.adapters.local import write_transaction

        with write_transaction(self._conn, self._lock) as c:
            won = c.execute(
                "INSERT INTO cooldowns VALUES (?, ?, ?) ON CONFLICT (model) DO UPDATE SET "
                "run_id = excluded.run_id, until = excluded.until WHERE cooldowns.until <= ?",
                (model, run_id, now + cooldown_s, now),
            ).rowcount
            if won == 1:
                return None
            row = c.execute(
                "SELECT run_id, until FROM cooldowns WHERE model = ?", (model,)
            ).fetchone()
        return Hold(str(row[0]), float(row[1]))

    def release(self, model: str, run_id: str) -> None:
        from aibackend.adapters.local import write_transaction

        with write_transaction(self._conn, self._lock) as c:
            c.execute("DELETE FROM cooldowns WHERE model = ? AND run_id = ?", (model, run_id))

    def record(self, decision: Decision) -> None:
        from aibackend.adapters.local import write_transaction

        with write_transaction(self._conn, self._lock) as c:
            c.execute(
                "INSERT INTO decisions (model, doc) VALUES (?, ?)",
                (decision.model, json.dumps(asdict(decision))),
            )

    def decisions(self, model: str) -> list[Decision]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT doc FROM decisions WHERE model = ? ORDER BY seq", (model,)
            ).fetchall()
        return [Decision(**json.loads(r[0])) for r in rows]


class DynamoRetrainState:
    """Items keyed `id` in the `retrain-state` data table: `cooldown#<model>` {run_id, until}
    and `decision#<model>#<time>#<run>` {doc}; `expiration` is the table's TTL attribute."""

    def __init__(self, table: str, client: Any = None) -> None:
        self.table = table
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self._db = client

    def claim(self, model: str, run_id: str, now: float, cooldown_s: float) -> Hold | None:
        until = now + cooldown_s
        key = {"S": f"cooldown#{model}"}
        try:
            self._db.put_item(
                TableName=self.table,
                Item={
                    "id": key,
                    "run_id": {"S": run_id},
                    "until": {"N": repr(until)},
                    "expiration": {"N": str(int(until) + 1)},
                },
                ConditionExpression="attribute_not_exists(id) OR #u <= :now",
                ExpressionAttributeNames={"#u": "until"},
                ExpressionAttributeValues={":now": {"N": repr(now)}},
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            item = self._db.get_item(TableName=self.table, Key={"id": key}, ConsistentRead=True)
            held = item.get("Item", {})
            return Hold(held["run_id"]["S"], float(held["until"]["N"]))
        return None

    def release(self, model: str, run_id: str) -> None:
        # Another run may hold it by now: then it is not ours to give back.
        with contextlib.suppress(self._db.exceptions.ConditionalCheckFailedException):
            self._db.delete_item(
                TableName=self.table,
                Key={"id": {"S": f"cooldown#{model}"}},
                ConditionExpression="run_id = :run",
                ExpressionAttributeValues={":run": {"S": run_id}},
            )

    def record(self, decision: Decision) -> None:
        self._db.put_item(
            TableName=self.table,
            Item={
                "id": {"S": f"decision#{decision.model}#{decision.at:017.6f}#{decision.run_id}"},
                "doc": {"S": json.dumps(asdict(decision))},
                "expiration": {"N": str(int(decision.at) + DECISION_RETENTION_S)},
            },
        )

    def decisions(self, model: str) -> list[Decision]:
        """Scan of the model's decisions (operator use; the table is small)."""
        prefix = f"decision#{model}#"
        pages = self._db.get_paginator("scan").paginate(
            TableName=self.table,
            FilterExpression="begins_with(id, :p)",
            ExpressionAttributeValues={":p": {"S": prefix}},
        )
        items = [i for page in pages for i in page.get("Items", [])]
        items.sort(key=lambda i: i["id"]["S"])
        return [Decision(**json.loads(i["doc"]["S"])) for i in items]


# --- starters ---------------------------------------------------------------------------------


def pipeline_starter(
    settings: PlatformSettings, env: Mapping[str, str] | None = None
) -> PipelineStarter:
    if settings.adapters == "aws":
        return StepFunctionsStarter.from_env(env)
    rows = (os.environ if env is None else env).get("RETRAIN_LOCAL_ROWS", "")
    return LocalProcessStarter(settings, rows=int(rows) if rows else None)


class LocalProcessStarter:
    """A detached `aib train <model>` (the local step runner): the trigger returns at once,
    the run goes on in its own session, its output in `<state>/training/<run_id>.log`."""

    def __init__(self, settings: PlatformSettings, *, rows: int | None = None) -> None:
        self.settings = settings
        self.rows = rows

    def command(self, model: str) -> list[str]:
        state = self.settings.state_dir.resolve()
        cmd = [sys.executable, "-m", "aibackend.cli", "--state-dir", str(state), "train", model]
        return cmd + (["--rows", str(self.rows)] if self.rows else [])

    def start(self, trigger: Trigger, run_id: str) -> str:
        log = self.settings.state_dir.resolve() / "training" / f"{run_id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                self.command(trigger.model),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return f"local:{proc.pid}"


class StepFunctionsStarter:
    """`states:StartExecution` on `<TRAINING_STATE_MACHINE_ARN_PREFIX><model>`, named after
    the run (a redelivered event starts nothing new: the same name and input is idempotent)."""

    def __init__(self, arn_prefix: str, client: Any = None) -> None:
        self.arn_prefix = arn_prefix
        if client is None:
            import boto3

            client = boto3.client("stepfunctions")
        self._sfn = client

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StepFunctionsStarter:
        prefix = (os.environ if env is None else env).get("TRAINING_STATE_MACHINE_ARN_PREFIX")
        if not prefix:
            raise ConfigError(
                "TRAINING_STATE_MACHINE_ARN_PREFIX is not set: CDK sets it to "
                f"arn:<partition>:states:<region>:<account>:stateMachine:{STATE_MACHINE_PREFIX}"
            )
        return cls(prefix)

    def start(self, trigger: Trigger, run_id: str) -> str:
        done = self._sfn.start_execution(
            stateMachineArn=f"{self.arn_prefix}{trigger.model}",
            name=run_id,
            input=json.dumps(
                {"run": run_id, "cause": trigger.cause, "reason": trigger.reason}, sort_keys=True
            ),
        )
        return str(done["executionArn"])
