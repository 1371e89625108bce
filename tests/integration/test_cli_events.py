"""`aib send | queues | redrive | put-events | put | events replay` on a local state folder."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aibackend.adapters.local_bus import LocalEventBus, Target
from aibackend.adapters.local_queue import SqliteQueueService
from aibackend.cli import main
from aibackend.ports import QueueConfig


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIB_STATE_DIR", str(tmp_path))  # restored after the test
    monkeypatch.setenv("AIB_ADAPTERS", "local")
    q = SqliteQueueService(tmp_path / "queues.db")
    q.ensure(QueueConfig(name="orders-dlq"))
    q.ensure(QueueConfig(name="orders", max_receive_count=1, dead_letter_queue="orders-dlq"))
    return tmp_path


def test_send_then_queues_shows_the_depth(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = state / "orders.jsonl"
    lines.write_text('{"id": 1}\n{"id": 2}\n\n{"id": 3}\n')
    assert main(["send", "orders", f"@{lines}", "--lines"]) == 0
    assert main(["send", "orders", "plain body"]) == 0
    assert "sent 3 message(s) to orders" in capsys.readouterr().out
    assert main(["queues"]) == 0
    row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("orders "))
    assert row.split()[:4] == ["orders", "4", "0", "0"]


def test_redrive_moves_dead_letters_back(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a message that failed once and moved to the DLQ
    queues = SqliteQueueService(state / "queues.db")
    orders = queues.get("orders")
    orders.send("m")
    orders.receive(1, visibility_timeout_s=0)
    assert orders.receive(1) == []  # second receive moves it to the DLQ
    assert queues.get("orders-dlq").stats().visible == 1
    # WHEN it is redriven
    assert main(["redrive", "orders-dlq"]) == 0
    # THEN it is back on its source queue
    assert "moved 1 message(s)" in capsys.readouterr().out
    assert orders.stats().visible == 1


def test_put_events_records_events_for_the_runtime(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got: list[object] = []
    bus = LocalEventBus(state / "events.db", deliver=lambda t, p: got.append(p))
    bus.put_rule(
        "r", bus="aib", pattern={"source": ["shop"]}, targets=[Target(kind="function", name="f")]
    )
    detail = json.dumps([{"sku": "a"}, {"sku": "b"}])
    argv = ["put-events", "--source", "shop", "--detail-type", "Product Viewed"]
    assert main([*argv, "--detail", detail]) == 0
    assert len(capsys.readouterr().out.split()) == 2  # two event ids
    # the dispatcher of the running `aib dev` (here: run_due) delivers them
    assert bus.run_due() == 2
    assert sorted(p["detail"]["sku"] for p in got) == ["a", "b"]  # type: ignore[index]


def test_put_and_replay(state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.csv"
    src.write_text("a,b\n")
    assert main(["put", "pipeline-data", "in/day1.csv", str(src)]) == 0
    assert (state / "buckets" / "pipeline-data" / "in" / "day1.csv").read_text() == "a,b\n"
    got: list[object] = []
    bus = LocalEventBus(state / "events.db", deliver=lambda t, p: got.append(p))
    bus.put_rule(
        "r", bus="aib", pattern={"source": ["shop"]}, targets=[Target(kind="function", name="f")]
    )
    assert main(["put-events", "--source", "shop", "--detail-type", "X", "--detail", "{}"]) == 0
    bus.run_due()
    now = datetime.now(UTC)
    since, until = (
        (now - timedelta(minutes=5)).isoformat(),
        (now + timedelta(minutes=5)).isoformat(),
    )
    assert main(["events", "replay", "--since", since, "--until", until, "--name", "r1"]) == 0
    assert "replaying 1 archived event(s)" in capsys.readouterr().out
    bus.run_due()
    assert [p.get("replay-name") for p in got] == [None, "r1"]  # type: ignore[union-attr]


def test_put_refuses_a_bucket_no_function_declares_and_a_missing_file(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.csv"
    src.write_text("a,b\n")
    # GIVEN a bucket name no function.toml declares (a typo of pipeline-data)
    # WHEN a file is put there THEN it is refused with the declared buckets, and no folder
    # appears that no function would ever watch
    assert main(["put", "pipeline-dta", "in/day1.csv", str(src)]) == 1
    err = capsys.readouterr().err
    assert "no function declares a bucket 'pipeline-dta'" in err
    assert "pipeline-data" in err
    assert not (state / "buckets" / "pipeline-dta").exists()
    # GIVEN a declared bucket and a file that does not exist THEN the file is named
    assert main(["put", "pipeline-data", "in/day1.csv", str(tmp_path / "nope.csv")]) == 1
    assert "no file" in capsys.readouterr().err


def test_queues_with_a_name_shows_a_failure_queues_reasons_without_receiving(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aibackend.contracts.base import ContractError
    from aibackend.contracts.rejects import rejection_record

    # GIVEN a consumer's failure queue holding the record of a rejected event, and a DLQ
    # holding a plain message
    q = SqliteQueueService(state / "queues.db")
    failures = q.ensure(QueueConfig(name="fraud_events-failures"))
    event = {"id": "ev-1", "detail-type": "Transaction Created", "detail": {"amount": -1}}
    record = rejection_record(event, ContractError("amount: must be above 0"), None)
    failures.send(json.dumps(record))
    q.get("orders-dlq").send('{"id": 7}')
    # WHEN `aib queues NAME` shows them
    assert main(["queues", "fraud_events-failures"]) == 0
    out = capsys.readouterr().out
    # THEN the reason and the event are on one line
    assert (
        "Transaction Created ev-1 -- ContractRejected, ContractError: amount: must be above 0"
        in out
    )
    assert main(["queues", "orders-dlq", "--json"]) == 0
    [shown] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert shown["body"] == '{"id": 7}' and shown["receive_count"] == 0
    # AND nothing was received: both messages are still visible
    assert failures.stats().visible == 1
    assert q.get("orders-dlq").stats().visible == 1


def test_queues_with_a_name_shows_why_a_message_is_in_a_dlq_when_its_sender_said(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aibackend.events.batches import Rejected, Rejections

    # GIVEN a batch consumer of `orders` that rejected a message into orders-dlq
    q = SqliteQueueService(state / "queues.db")
    q.ensure(QueueConfig(name="orders-dlq"))
    reason = "UnknownVersionError: unknown schema_version '9'; known: 1"
    assert Rejections("orders", lambda: q).send([Rejected("m-1", '{"id": "e-9"}', reason)]) == []
    # WHEN `aib queues orders-dlq` shows it
    assert main(["queues", "orders-dlq"]) == 0
    # THEN the body is shown as it came, and why it is there
    out = capsys.readouterr().out
    assert '  {"id": "e-9"}\n' in out
    assert f"  why: ContractRejected: {reason}\n" in out
