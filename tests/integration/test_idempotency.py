"""Idempotent functions on the SQLite persistence layer, checked against the DynamoDB one.

The cases that do not move a clock run on both layers (DynamoDB under moto, no network), so
the SQLite layer is held to the DynamoDB layer's behaviour.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from moto import mock_aws

from aibackend.idempotency import (
    ClaimLostError,
    SqlitePersistenceLayer,
    SqliteUnitOfWork,
    UnitOfWork,
    effects_transaction,
    persistence_layer,
)
from aibackend.settings import PlatformSettings
from tests.support import create_data_table

EXPIRES_S = 600


class FakeClock:
    """The real time, plus however far a test has moved it forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class FakeContext:
    """The part of a Lambda context Powertools idempotency reads."""

    def __init__(self, remaining_ms: int) -> None:
        self.deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


class Killed(BaseException):
    """Stands in for SIGKILL or a Lambda timeout: no `except Exception` sees it."""


def record(message_id: str, body: str = "{}") -> dict[str, Any]:
    return {"messageId": message_id, "body": body}


class Service:
    """An idempotent record processor, counting how often its body really runs."""

    def __init__(self, store: BasePersistenceLayer, *, validate_body: bool = False) -> None:
        self.store = store
        self.config = IdempotencyConfig(
            event_key_jmespath="messageId",
            payload_validation_jmespath="body" if validate_body else "",
            expires_after_seconds=EXPIRES_S,
        )
        self.runs = 0
        self.before: Callable[[dict[str, Any]], None] = lambda r: None
        self.effect: Callable[[UnitOfWork, dict[str, Any]], None] = lambda uow, r: None
        self.after: Callable[[dict[str, Any]], None] = lambda r: None

        @idempotent_function(
            data_keyword_argument="record", config=self.config, persistence_store=store
        )
        def process(record: dict[str, Any]) -> dict[str, Any]:
            self.runs += 1
            self.before(record)
            with effects_transaction(store) as uow:
                self.effect(uow, record)
            self.after(record)
            return {"id": record["messageId"], "run": self.runs}

        self._process = process

    def __call__(self, rec: dict[str, Any], *, remaining_ms: int = 60_000) -> dict[str, Any]:
        self.config.register_lambda_context(FakeContext(remaining_ms))  # type: ignore[arg-type]
        result: dict[str, Any] = self._process(record=rec)
        return result

    def in_thread(self, rec: dict[str, Any], **kw: Any) -> threading.Thread:
        """Run one call on its own thread (a concurrent invocation); a `Killed` call just ends."""

        def run() -> None:
            with contextlib.suppress(Killed):
                self(rec, **kw)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t


def put_effect(uow: UnitOfWork, rec: dict[str, Any]) -> None:
    uow.put("results", rec["messageId"], {"body": rec["body"], "score": 0.5})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sqlite_store(tmp_path: Path, clock: FakeClock) -> Iterator[SqlitePersistenceLayer]:
    store = SqlitePersistenceLayer(tmp_path / "idempotency.db", clock=clock)
    yield store
    store.close()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var, value in {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(var, value)
    with mock_aws():
        yield


def create_table(name: str) -> None:
    create_data_table(boto3.client("dynamodb"), name)


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BasePersistenceLayer]:
    if request.param == "sqlite":
        local = SqlitePersistenceLayer(tmp_path / "idempotency.db")
        yield local
        local.close()
        return
    request.getfixturevalue("aws_env")
    create_table("idempotency")
    create_table("results")
    yield DynamoDBPersistenceLayer(table_name="idempotency")


def effect_of(store: BasePersistenceLayer, key: str) -> dict[str, Any] | None:
    with effects_transaction(store) as uow:
        return uow.get("results", key)


# -- both layers ---------------------------------------------------------------------------


def test_second_call_returns_the_stored_result_without_running(
    store: BasePersistenceLayer,
) -> None:
    # GIVEN a record processed once, with an effect
    service = Service(store)
    service.effect = put_effect
    first = service(record("m-1", '{"amount": 10}'))

    # WHEN the same message is delivered again
    second = service(record("m-1", '{"amount": 10}'))

    # THEN the stored response comes back, the body did not run again, the effect is there once
    assert second == first == {"id": "m-1", "run": 1}
    assert service.runs == 1
    assert effect_of(store, "m-1") == {"body": '{"amount": 10}', "score": 0.5}


def test_a_call_while_the_key_is_in_progress_raises(store: BasePersistenceLayer) -> None:
    # GIVEN an invocation that is still running
    service = Service(store)
    started, release = threading.Event(), threading.Event()

    def hold(r: dict[str, Any]) -> None:
        started.set()
        release.wait(10)

    service.before = hold
    running = service.in_thread(record("m-1"))
    assert started.wait(10)

    # WHEN a concurrent delivery of the same message arrives
    # THEN it is refused, and the first one completes normally
    service.before = lambda r: None
    with pytest.raises(IdempotencyAlreadyInProgressError):
        service(record("m-1"))
    release.set()
    running.join(10)
    assert service(record("m-1")) == {"id": "m-1", "run": 1}
    assert service.runs == 1


def test_in_progress_record_of_a_killed_invocation_expires_with_the_lambda_context(
    store: BasePersistenceLayer,
) -> None:
    # GIVEN an invocation with 1 s left that is killed after claiming the key
    service = Service(store)
    deadline = time.monotonic() + 1.0

    def die(r: dict[str, Any]) -> None:
        raise Killed

    service.before = die
    service.in_thread(record("m-1"), remaining_ms=1000).join(10)
    service.before = lambda r: None

    # WHEN the message comes back before that deadline THEN the key is still in progress
    with pytest.raises(IdempotencyAlreadyInProgressError):
        service(record("m-1"))

    # WHEN it comes back after the deadline THEN it is processed (not blocked for an hour)
    time.sleep(max(0.0, deadline - time.monotonic()) + 0.05)
    assert service(record("m-1")) == {"id": "m-1", "run": 2}
    assert service(record("m-1")) == {"id": "m-1", "run": 2}


def test_a_failed_call_leaves_no_record_and_no_effect(store: BasePersistenceLayer) -> None:
    # GIVEN a body that writes its effect, then fails
    service = Service(store)
    service.effect = put_effect

    def fail(r: dict[str, Any]) -> None:
        raise ValueError("downstream said no")

    service.after = fail

    # WHEN it runs THEN the error propagates and the key is free again
    with pytest.raises(ValueError, match="downstream said no"):
        service(record("m-1"))
    service.after = lambda r: None
    assert service(record("m-1")) == {"id": "m-1", "run": 2}
    assert service.runs == 2
    assert effect_of(store, "m-1") is not None


def test_a_different_payload_under_the_same_key_is_refused(store: BasePersistenceLayer) -> None:
    # GIVEN a key processed with one body, its payload validated
    service = Service(store, validate_body=True)
    service(record("m-1", '{"amount": 10}'))

    # WHEN the same key arrives with another body THEN it is refused
    with pytest.raises(IdempotencyValidationError):
        service(record("m-1", '{"amount": 99}'))


# -- SQLite: one transaction for the effect and the record ------------------------------------


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read through a separate connection: only what is committed."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_effect_and_completion_commit_together(sqlite_store: SqlitePersistenceLayer) -> None:
    # GIVEN a body that writes rows of its own table and an item through the unit of work
    db = sqlite_store.db_path
    with effects_transaction(sqlite_store) as uow:
        assert isinstance(uow, SqliteUnitOfWork)
        uow.sql.execute("CREATE TABLE ledger (message_id TEXT, amount INTEGER)")
    seen_before_return: list[list[tuple[Any, ...]]] = []
    service = Service(sqlite_store)

    def effect(uow: UnitOfWork, rec: dict[str, Any]) -> None:
        assert isinstance(uow, SqliteUnitOfWork)
        uow.sql.execute("INSERT INTO ledger VALUES (?, 10)", (rec["messageId"],))
        put_effect(uow, rec)

    service.effect = effect
    service.after = lambda r: seen_before_return.append(rows(db, "SELECT * FROM ledger"))

    # WHEN it runs
    service(record("m-1"))

    # THEN nothing was visible when the body returned; the rows and the COMPLETED record
    # became visible at once
    assert seen_before_return == [[]]
    assert rows(db, "SELECT * FROM ledger") == [("m-1", 10)]
    assert rows(db, "SELECT tbl, key FROM effect_items") == [("results", "m-1")]
    assert rows(db, "SELECT status FROM idempotency") == [("COMPLETED",)]


def test_an_exception_after_the_effect_rolls_both_back(
    sqlite_store: SqlitePersistenceLayer,
) -> None:
    # GIVEN a body that writes its effect and raises after the effects block
    service = Service(sqlite_store)
    service.effect = put_effect

    def fail(r: dict[str, Any]) -> None:
        raise RuntimeError("crash after the effect")

    service.after = fail

    # WHEN it runs
    with pytest.raises(RuntimeError):
        service(record("m-1"))

    # THEN neither the effect nor a record was committed
    assert rows(sqlite_store.db_path, "SELECT * FROM effect_items") == []
    assert rows(sqlite_store.db_path, "SELECT * FROM idempotency") == []


def test_an_exception_inside_the_effects_block_rolls_back(
    sqlite_store: SqlitePersistenceLayer,
) -> None:
    # GIVEN a body whose effects block fails half way
    service = Service(sqlite_store)

    def effect(uow: UnitOfWork, rec: dict[str, Any]) -> None:
        put_effect(uow, rec)
        raise RuntimeError("half way")

    service.effect = effect

    # WHEN it runs THEN nothing stays, and the key can be processed again
    with pytest.raises(RuntimeError):
        service(record("m-1"))
    assert rows(sqlite_store.db_path, "SELECT * FROM effect_items") == []
    service.effect = put_effect
    assert service(record("m-1")) == {"id": "m-1", "run": 2}
    assert rows(sqlite_store.db_path, "SELECT key FROM effect_items") == [("m-1",)]


def test_records_expire_after_expires_after_seconds(
    sqlite_store: SqlitePersistenceLayer, clock: FakeClock
) -> None:
    # GIVEN a completed record
    service = Service(sqlite_store)
    service(record("m-1"))

    # WHEN the message comes back within expires_after_seconds THEN the stored result returns
    clock.advance(EXPIRES_S - 5)
    assert service(record("m-1")) == {"id": "m-1", "run": 1}

    # WHEN it comes back after THEN the body runs again, and the expired row can be purged
    clock.advance(10)
    assert service(record("m-1")) == {"id": "m-1", "run": 2}
    clock.advance(EXPIRES_S + 5)
    assert sqlite_store.purge_expired() == 1


def test_without_a_lambda_context_a_killed_invocation_blocks_until_expiry(
    sqlite_store: SqlitePersistenceLayer, clock: FakeClock
) -> None:
    # GIVEN a killed invocation whose config never saw a Lambda context
    config = IdempotencyConfig(event_key_jmespath="messageId", expires_after_seconds=EXPIRES_S)
    runs: list[str] = []

    @idempotent_function(
        data_keyword_argument="record", config=config, persistence_store=sqlite_store
    )
    def process(record: dict[str, Any]) -> dict[str, Any]:
        runs.append(record["messageId"])
        if len(runs) == 1:
            raise Killed
        return {"ok": True}

    with pytest.warns(UserWarning, match="register_lambda_context"), pytest.raises(Killed):
        process(record=record("m-1"))

    # WHEN the message comes back minutes later THEN the key is still blocked
    clock.advance(300)
    with pytest.raises(IdempotencyAlreadyInProgressError), pytest.warns(UserWarning):
        process(record=record("m-1"))

    # WHEN the record expires THEN it is processed
    clock.advance(EXPIRES_S)
    with pytest.warns(UserWarning):
        assert process(record=record("m-1")) == {"ok": True}


def test_an_invocation_that_outlived_its_claim_commits_nothing(
    sqlite_store: SqlitePersistenceLayer,
) -> None:
    # GIVEN an invocation that stalls past its deadline, and a retry that took the key over
    service = Service(sqlite_store)
    service.effect = put_effect
    started, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def stall(r: dict[str, Any]) -> None:
        started.set()
        release.wait(10)

    service.before = stall

    def slow() -> None:
        try:
            service(record("m-1"), remaining_ms=50)
        except Exception as e:
            errors.append(e)

    t = threading.Thread(target=slow)
    t.start()
    assert started.wait(10)
    service.before = lambda r: None
    time.sleep(0.1)
    assert service(record("m-1"))["run"] == 2

    # WHEN the stalled invocation finally finishes
    release.set()
    t.join(10)

    # THEN its completion is refused and its effect rolled back: the effect exists once,
    # from the retry, and the stored response is the retry's
    assert len(errors) == 1
    assert isinstance(errors[0], IdempotencyPersistenceLayerError)
    assert isinstance(errors[0].__cause__, ClaimLostError)
    assert rows(sqlite_store.db_path, "SELECT key FROM effect_items") == [("m-1",)]
    assert service(record("m-1")) == {"id": "m-1", "run": 2}


def test_effects_outside_an_idempotent_call_commit_on_exit(
    sqlite_store: SqlitePersistenceLayer,
) -> None:
    # GIVEN no idempotent call under way
    db = sqlite_store.db_path

    # WHEN a block writes an item THEN it is committed when the block ends
    with effects_transaction(sqlite_store) as uow:
        assert uow.put("results", "a", {"n": 1}) is True
        assert uow.put("results", "a", {"n": 2}) is False
    assert rows(db, "SELECT key, item FROM effect_items") == [("a", '{"n": 1}')]

    # WHEN a block fails THEN its writes roll back
    with pytest.raises(KeyError), effects_transaction(sqlite_store) as uow:
        uow.put("results", "b", {"n": 1})
        raise KeyError("b")
    assert rows(db, "SELECT key FROM effect_items") == [("a",)]


def test_an_idempotent_call_inside_an_open_effects_block_is_refused(
    sqlite_store: SqlitePersistenceLayer,
) -> None:
    # GIVEN an open effects block
    service = Service(sqlite_store)

    # WHEN an idempotent function is called inside it THEN it is refused with a hint
    with pytest.raises(IdempotencyPersistenceLayerError) as err, effects_transaction(sqlite_store):
        service(record("m-1"))
    assert "inside an `effects_transaction` block" in str(err.value.__cause__)


def test_a_call_that_died_after_its_effects_does_not_wedge_the_thread(
    sqlite_store: SqlitePersistenceLayer,
) -> None:
    # GIVEN a call killed between its effects block and its return (its effects still pending)
    service = Service(sqlite_store)
    service.effect = put_effect

    def die(r: dict[str, Any]) -> None:
        raise Killed

    service.after = die
    with pytest.raises(Killed):
        service(record("m-1"), remaining_ms=50)

    # WHEN the same thread runs the next call
    service.after = lambda r: None
    assert service(record("m-2")) == {"id": "m-2", "run": 2}

    # THEN only the new call's effect is committed; the killed one's key frees at its deadline
    assert rows(sqlite_store.db_path, "SELECT key FROM effect_items") == [("m-2",)]
    time.sleep(0.1)
    assert service(record("m-1")) == {"id": "m-1", "run": 3}


def test_an_idempotent_call_between_effects_and_return_fails_the_caller(
    sqlite_store: SqlitePersistenceLayer,
) -> None:
    # GIVEN a call that, after its effects, calls another idempotent function on the same store
    inner = Service(sqlite_store)
    inner.effect = put_effect
    outer = Service(sqlite_store)
    outer.effect = lambda uow, r: uow.put("outer", r["messageId"], {})
    outer.after = lambda r: inner(record("inner-" + r["messageId"])) and None

    # WHEN it runs THEN the caller fails instead of completing without its effects,
    # and its key is free for the retry
    with pytest.raises(IdempotencyPersistenceLayerError) as err:
        outer(record("m-1"))
    assert "rolled back" in str(err.value.__cause__)
    assert rows(sqlite_store.db_path, "SELECT tbl, key FROM effect_items") == [
        ("results", "inner-m-1")
    ]
    outer.after = lambda r: None
    assert outer(record("m-1")) == {"id": "m-1", "run": 2}
    assert rows(sqlite_store.db_path, "SELECT tbl FROM effect_items ORDER BY tbl") == [
        ("outer",),
        ("results",),
    ]


def test_records_survive_a_new_layer_on_the_same_file(tmp_path: Path) -> None:
    # GIVEN a record completed through one layer (one process)
    first = Service(SqlitePersistenceLayer(tmp_path / "idempotency.db"))
    first(record("m-1"))

    # WHEN another layer opens the same file (the process restarted)
    second = Service(SqlitePersistenceLayer(tmp_path / "idempotency.db"))

    # THEN it sees the record
    assert second(record("m-1")) == {"id": "m-1", "run": 1}
    assert second.runs == 0


# -- choosing the layer ----------------------------------------------------------------------


def test_local_settings_give_a_sqlite_layer_in_the_state_folder(tmp_path: Path) -> None:
    layer = persistence_layer(PlatformSettings(adapters="local", state_dir=tmp_path), "orders")
    assert isinstance(layer, SqlitePersistenceLayer)
    assert layer.db_path == tmp_path / "idempotency" / "orders.db"
    assert layer.table == "orders"


def test_each_local_table_has_its_own_file(tmp_path: Path) -> None:
    # GIVEN two functions' idempotency tables (two DynamoDB tables on AWS)
    settings = PlatformSettings(adapters="local", state_dir=tmp_path)
    a = persistence_layer(settings, "fraud-events-idempotency")
    b = persistence_layer(settings, "pricing-idempotency")
    # THEN they live in different SQLite files: their writers never queue for one lock
    assert isinstance(a, SqlitePersistenceLayer) and isinstance(b, SqlitePersistenceLayer)
    assert a.db_path != b.db_path
    assert {a.db_path.parent, b.db_path.parent} == {tmp_path / "idempotency"}


def test_a_local_table_name_cannot_leave_the_idempotency_folder(tmp_path: Path) -> None:
    settings = PlatformSettings(adapters="local", state_dir=tmp_path)
    with pytest.raises(ValueError, match="table name"):
        persistence_layer(settings, "../outside")


def test_aws_settings_give_a_dynamodb_layer_on_the_physical_table(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIB_TABLE_ORDERS_IDEMPOTENCY", "prod-orders-idem-1A2B")
    layer = persistence_layer(PlatformSettings(adapters="aws"), "orders-idempotency")
    assert isinstance(layer, DynamoDBPersistenceLayer)
    assert layer.table_name == "prod-orders-idem-1A2B"
    default = persistence_layer(PlatformSettings(adapters="aws"))
    assert isinstance(default, DynamoDBPersistenceLayer)
    assert default.table_name == "idempotency"


def test_dynamodb_effects_are_conditional_puts(aws_env: None) -> None:
    # GIVEN an effect table on AWS
    create_table("results")
    store = DynamoDBPersistenceLayer(table_name="idempotency")

    # WHEN the same key is put twice THEN the second put is a no-op
    with effects_transaction(store) as uow:
        assert uow.put("results", "m-1", {"score": 0.25, "n": 3, "tags": ["a"]}) is True
        assert uow.put("results", "m-1", {"score": 0.99, "n": 4, "tags": []}) is False
        assert uow.get("results", "m-1") == {"score": 0.25, "n": 3, "tags": ["a"]}
        assert uow.get("results", "m-2") is None
