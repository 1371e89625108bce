"""fraud_events: Transaction Created on the bus -> Transaction Scored / Fraud Suspected."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aibackend.local.runtime import LocalRuntime
from aibackend.ports import PutEvent
from tests.support import FUNCTIONS, running_runtime, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def runtime(fraud_state: Path, tmp_path: Path) -> Iterator[LocalRuntime]:
    with running_runtime(FUNCTIONS, tmp_path / "state", seed_state=fraud_state) as rt:
        yield rt


def test_a_created_transaction_is_scored_and_suspected_fraud_is_published(
    runtime: LocalRuntime, event: Callable[[str], dict[str, Any]]
) -> None:
    # GIVEN the sample Transaction Created event (the account-takeover transaction)
    sample = event("eventbridge/custom_event")
    result = runtime.bus.put_events(
        [
            PutEvent(
                source=sample["source"], detail_type=sample["detail-type"], detail=sample["detail"]
            )
        ]
    )
    [created_id] = result.event_ids
    # THEN a Transaction Scored and a Fraud Suspected event follow, naming their cause
    scored = wait_for(lambda: runtime.bus.archived(detail_type="Transaction Scored"))
    suspected = wait_for(lambda: runtime.bus.archived(detail_type="Fraud Suspected"))
    detail = scored[0]["detail"]
    assert scored[0]["source"] == "aib.fraud"
    assert detail["caused_by"] == created_id
    assert detail["transaction_id"] == "txn-0001"
    assert detail["decision"] == "decline" and detail["score"] >= 0.5
    assert detail["model"]["name"] == "fraud"
    assert suspected[0]["detail"] == detail


def test_an_everyday_purchase_is_scored_without_an_alert(runtime: LocalRuntime) -> None:
    batch = json.loads((ROOT / "events" / "payloads" / "transactions_batch.json").read_text())
    grocery = batch["transactions"][1]
    runtime.bus.put_events(
        [PutEvent(source="aib.payments", detail_type="Transaction Created", detail=grocery)]
    )
    scored = wait_for(lambda: runtime.bus.archived(detail_type="Transaction Scored"))
    assert scored[0]["detail"]["decision"] == "approve"
    time.sleep(0.5)
    assert runtime.bus.archived(detail_type="Fraud Suspected") == []


def test_an_invalid_transaction_ends_in_the_failure_queue_with_the_reason(
    runtime: LocalRuntime,
) -> None:
    runtime.bus.put_events(
        [PutEvent(source="aib.payments", detail_type="Transaction Created", detail={"amount": -1})]
    )
    failures = runtime.queues.get("fraud_events-failures")
    wait_for(lambda: failures.stats().visible == 1, timeout=30)
    record = json.loads(failures.receive(1)[0].body)
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert "card_id" in record["responsePayload"]["errorMessage"]


def test_a_redelivered_event_is_not_published_twice(runtime: LocalRuntime) -> None:
    # GIVEN one Transaction Created event delivered twice (EventBridge is at-least-once)
    txn = json.loads((ROOT / "events" / "payloads" / "transaction.json").read_text())
    event = {
        "version": "0",
        "id": "5d1e0f7a-0000-4000-8000-000000000001",
        "detail-type": "Transaction Created",
        "source": "aib.payments",
        "account": "000000000000",
        "time": "2026-11-27T12:00:00Z",
        "region": "local",
        "resources": [],
        "detail": txn,
    }
    host = runtime.hosts["fraud_events"]
    first = host.invoke(event)
    second = host.invoke(event)
    # THEN the second delivery returns the first result and publishes nothing new
    assert second == first
    scored = wait_for(lambda: runtime.bus.archived(detail_type="Transaction Scored"))
    time.sleep(0.3)
    assert len(runtime.bus.archived(detail_type="Transaction Scored")) == len(scored) == 1
