"""The event ledger of batch consumers (aibackend.ledger): the same behaviour on SQLite and on
DynamoDB (moto), which the consumers rely on to skip redelivered events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from aibackend.ledger import DynamoEventLedger, EventLedger, SqliteEventLedger, event_ledger
from aibackend.settings import PlatformSettings
from tests.support import create_data_table

TABLE = "aib-fraud-events-idempotency"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


#: A ledger on a clock the test moves; called again, another client of the same table.
Ledgers = Callable[[], EventLedger]


@pytest.fixture(params=["sqlite", "dynamodb"])
def ledgers(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Ledgers, Clock]]:
    clock = Clock()
    if request.param == "sqlite":
        yield (lambda: SqliteEventLedger(tmp_path / "t.db", ttl_s=60, clock=clock)), clock
        return
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        ddb = boto3.client("dynamodb")
        create_data_table(ddb, TABLE)
        yield (lambda: DynamoEventLedger(TABLE, ttl_s=60, client=ddb, clock=clock)), clock


def test_recorded_events_are_handled_and_others_are_not(ledgers: tuple[Ledgers, Clock]) -> None:
    make, _ = ledgers
    ledger = make()
    # GIVEN nothing recorded: nothing is handled (and an empty question costs nothing)
    assert ledger.handled(["a", "b"]) == set() and ledger.handled([]) == set()
    # WHEN a batch records two of three events
    ledger.record(["a", "b"])
    # THEN another consumer of the table (a second worker) sees exactly those two
    assert make().handled(["a", "b", "c"]) == {"a", "b"}


def test_an_entry_expires_after_its_ttl_and_a_second_record_renews_it(
    ledgers: tuple[Ledgers, Clock],
) -> None:
    make, clock = ledgers
    ledger = make()
    ledger.record(["old", "renewed"])
    clock.now += 45
    ledger.record(["renewed"])
    # WHEN the first records are older than the ttl (60 s)
    clock.now += 30
    # THEN only the renewed one is still handled (an expired item TTL has not deleted yet
    # counts as gone)
    assert ledger.handled(["old", "renewed"]) == {"renewed"}


def test_batches_beyond_one_request_are_read_and_written_whole(
    ledgers: tuple[Ledgers, Clock],
) -> None:
    # GIVEN more ids than one BatchWriteItem (25) or BatchGetItem (100) takes, one repeated
    make, _ = ledgers
    ids = [f"event-{i}" for i in range(130)]
    make().record([*ids, ids[0]])
    # THEN every one is handled
    assert make().handled([*ids, "other"]) == set(ids)


def test_the_local_ledger_lives_in_the_functions_idempotency_file(tmp_path: Path) -> None:
    ledger = event_ledger(PlatformSettings(state_dir=tmp_path), "orders-idempotency")
    ledger.record(["x"])
    assert (tmp_path / "idempotency" / "orders-idempotency.db").is_file()
    assert event_ledger(PlatformSettings(state_dir=tmp_path), "orders-idempotency").handled(
        ["x"]
    ) == {"x"}
