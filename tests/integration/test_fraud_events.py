"""fraud_events through `aib dev`'s runtime: Transaction Created on the bus -> its queue ->
batches -> online features -> Transaction Scored / Fraud Suspected, chained by correlation id
(contract errors in the queue's DLQ: tests/integration/events/test_dead_letters.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aibackend.adapters.local import LocalObjectStore
from aibackend.contracts import parse
from aibackend.contracts.fraud import FraudSuspectedV1, TransactionScoredV1
from aibackend.local.logs import log_path, read_lines
from aibackend.local.runtime import LocalRuntime
from aibackend.ports import PutEvent
from tests import support
from tests.support import FUNCTIONS, running_runtime, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runtime(fraud_state: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    state = tmp_path_factory.mktemp("fraud-events") / "state"
    with running_runtime(FUNCTIONS, state, seed_state=fraud_state) as rt:
        yield rt


def put(
    runtime: LocalRuntime, detail: dict[str, Any], detail_type: str = "Transaction Created"
) -> str:
    result = runtime.bus.put_events(
        [PutEvent(source="aib.payments", detail_type=detail_type, detail=detail)]
    )
    [event_id] = result.event_ids
    assert event_id is not None
    return event_id


def caused_by(runtime: LocalRuntime, detail_type: str, event_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in runtime.bus.archived(limit=1000, detail_type=detail_type)
        if e["detail"].get("caused_by") == event_id
    ]


def test_a_created_transaction_is_scored_and_suspected_fraud_is_published(
    runtime: LocalRuntime, event: Callable[[str], dict[str, Any]]
) -> None:
    # GIVEN the sample Transaction Created event (the account-takeover transaction)
    sample = event("eventbridge/transaction_created")
    created_id = put(runtime, sample["detail"])
    # THEN a Transaction Scored and a Fraud Suspected event follow, naming their cause
    [scored] = wait_for(lambda: caused_by(runtime, "Transaction Scored", created_id))
    [suspected] = wait_for(lambda: caused_by(runtime, "Fraud Suspected", created_id))
    assert scored["source"] == suspected["source"] == "aib.fraud"
    # both fit their contracts and carry the chain's id: the Transaction Created event's own
    s, f = parse(scored).detail, parse(suspected).detail
    assert isinstance(s, TransactionScoredV1) and isinstance(f, FraudSuspectedV1)
    assert s.correlation_id == f.correlation_id == created_id
    assert s.transaction_id == f.transaction_id == "txn-0001"
    assert s.decision == f.decision == "decline" and s.score >= s.threshold == 0.5
    assert f.score == s.score and f.model == s.model and s.model.name == "fraud"


def test_a_correlation_id_given_by_the_producer_follows_the_chain(
    runtime: LocalRuntime, event: Callable[[str], dict[str, Any]]
) -> None:
    detail = {**event("eventbridge/transaction_created")["detail"], "transaction_id": "txn-corr"}
    created_id = put(runtime, {**detail, "correlation_id": "order-77"})
    [scored] = wait_for(lambda: caused_by(runtime, "Transaction Scored", created_id))
    assert scored["detail"]["correlation_id"] == "order-77"
    # AND fraud_events' log names the transaction with the chain's id (a line per batch,
    # written once the batch's results are out)
    log = log_path(runtime.settings.state_dir, "fraud_events")

    def logged() -> list[dict[str, Any]]:
        return [
            item
            for line in read_lines(log)
            if line.json and line.json.get("message") == "transactions scored"
            for item in line.json["scored"]
            if item["transaction_id"] == "txn-corr"
        ]

    assert wait_for(logged) == [
        {"transaction_id": "txn-corr", "correlation_id": "order-77", "decision": "decline"}
    ]


def test_an_everyday_purchase_is_scored_without_an_alert(runtime: LocalRuntime) -> None:
    batch = json.loads((ROOT / "events" / "payloads" / "transactions_batch.json").read_text())
    grocery = batch["transactions"][1]
    created_id = put(runtime, grocery)
    [scored] = wait_for(lambda: caused_by(runtime, "Transaction Scored", created_id))
    assert scored["detail"]["decision"] == "approve"
    time.sleep(0.5)
    assert caused_by(runtime, "Fraud Suspected", created_id) == []


def test_a_burst_of_purchases_raises_the_card_velocity_in_scored_events(
    runtime: LocalRuntime,
) -> None:
    # GIVEN five purchases of one card, two minutes apart, each put after the previous was scored
    start = datetime.fromisoformat("2026-11-27T14:00:00+00:00")
    base = json.loads((ROOT / "events" / "payloads" / "transaction.json").read_text())
    counts = []
    for i in range(5):
        detail = {
            **base,
            "transaction_id": f"burst-{i}",
            "card_id": "card-burst",
            "timestamp": (start + timedelta(minutes=2 * i)).isoformat(),
            "txn_count_1h": 0,  # what the producer claims is ignored
        }
        created_id = put(runtime, detail)
        [scored] = wait_for(lambda cid=created_id: caused_by(runtime, "Transaction Scored", cid))
        counts.append(scored["detail"]["features"]["txn_count_1h"])
    # THEN each one counts the card's purchases in the hour before it (model-independent)
    assert counts == [0, 1, 2, 3, 4]


def sqs_batch(*events: dict[str, Any]) -> dict[str, Any]:
    """The SQS event Lambda invokes fraud_events with: one message per EventBridge event."""
    return support.sqs_batch("fraud-events-transactions", *events)


def test_a_redelivered_event_is_not_published_twice(
    runtime: LocalRuntime, event: Callable[[str], dict[str, Any]]
) -> None:
    # GIVEN one Transaction Created event delivered twice (EventBridge and SQS are at-least-once)
    sample = event("eventbridge/transaction_created")
    sample["id"] = "5d1e0f7a-0000-4000-8000-000000000001"
    sample["detail"]["transaction_id"] = "txn-redelivered"
    host = runtime.hosts["fraud_events"]
    first = host.invoke(sqs_batch(sample))
    # WHEN it comes again, alone and then twice in one batch
    second = host.invoke(sqs_batch(sample))
    third = host.invoke(sqs_batch(sample, sample))
    # THEN every delivery succeeds, and only the first published anything
    assert first == second == third == {"batchItemFailures": []}
    scored = wait_for(lambda: caused_by(runtime, "Transaction Scored", sample["id"]))
    time.sleep(0.3)
    assert len(caused_by(runtime, "Transaction Scored", sample["id"])) == len(scored) == 1


def test_one_batch_scores_each_transaction_on_the_history_before_it(
    runtime: LocalRuntime, event: Callable[[str], dict[str, Any]]
) -> None:
    # GIVEN three purchases of a fresh card a minute apart, in one batch, newest first
    base = event("eventbridge/transaction_created")
    start = datetime.fromisoformat(base["detail"]["timestamp"])
    batch = []
    for i in (2, 1, 0):
        e = json.loads(json.dumps(base))
        e["id"] = f"batch-order-{i}"
        e["detail"].update(
            transaction_id=f"batch-order-txn-{i}",
            card_id="card-batch-order",
            timestamp=(start + timedelta(minutes=i)).isoformat(),
        )
        batch.append(e)
    # WHEN fraud_events handles the batch
    assert runtime.hosts["fraud_events"].invoke(sqs_batch(*batch)) == {"batchItemFailures": []}
    # THEN each is scored once, counting the card's purchases before it (not after it, nor
    # itself), whatever their order in the batch
    counts = {
        e["id"]: wait_for(lambda e=e: caused_by(runtime, "Transaction Scored", e["id"]))[0][
            "detail"
        ]["features"]["txn_count_1h"]
        for e in batch
    }
    assert counts == {"batch-order-0": 0, "batch-order-1": 1, "batch-order-2": 2}


def test_the_lambda_handler_answers_the_sample_aws_event(
    runtime: LocalRuntime, event: Callable[[str], dict[str, Any]]
) -> None:
    # GIVEN the AWS-shaped sample: an SQS batch of two Transaction Created events, the
    # versioned one and an unversioned one (read as v1)
    sample = event("sqs/fraud_events_batch")
    ids = [json.loads(r["body"])["id"] for r in sample["Records"]]
    # WHEN the handler is invoked with it as Lambda's SQS poller would
    answer = runtime.hosts["fraud_events"].invoke(sample)
    # THEN no message is left for a retry, and each event is scored and suspected
    assert answer == {"batchItemFailures": []}
    for event_id in ids:
        [scored] = wait_for(lambda i=event_id: caused_by(runtime, "Transaction Scored", i))
        assert scored["detail"]["decision"] == "decline"
        assert len(caused_by(runtime, "Fraud Suspected", event_id)) == 1


def test_a_scored_event_is_captured_under_the_id_of_the_event_it_scored(
    runtime: LocalRuntime, event: Callable[[str], dict[str, Any]]
) -> None:
    # GIVEN capture of fraud on (functions/monitoring.toml) and a Transaction Created event
    detail = {**event("eventbridge/transaction_created")["detail"], "transaction_id": "txn-cap"}
    created_id = put(runtime, detail)
    [scored] = wait_for(lambda: caused_by(runtime, "Transaction Scored", created_id))
    # WHEN the capture consumer has written it
    store = LocalObjectStore(
        runtime.settings.state_dir / "buckets" / "monitoring", bucket="monitoring"
    )

    def captured() -> list[dict[str, Any]]:
        records = (
            json.loads(line)
            for o in store.list("capture/fraud/")
            for line in store.get(o.key).splitlines()
        )
        return [r for r in records if r["inference_id"] == created_id]

    [record] = wait_for(captured)
    # THEN it holds the score, the features computed from the online table and the chain's id,
    # with the card id erased
    assert record["output"] == {"score": scored["detail"]["score"], "decision": "decline"}
    assert record["correlation_id"] == created_id
    assert record["inputs"]["card_id"] == "*****"
    assert record["inputs"]["txn_count_1h"] == scored["detail"]["features"]["txn_count_1h"]
