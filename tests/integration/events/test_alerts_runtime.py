"""Through `aib dev`'s runtime: a transaction followed from creation to alert, alerts from the
pipeline's events, a failing webhook ending in the failure queue."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from aibackend.local.runtime import LocalRuntime
from tests.conftest import load_event
from tests.support import wait_for

from .conftest import WEBHOOK_SECRET, Webhook, failure_record, put

pytestmark = pytest.mark.slow


def test_a_created_transaction_is_followed_to_a_signed_webhook_alert(
    events_runtime: LocalRuntime, webhook: Webhook
) -> None:
    # GIVEN the sample Transaction Created (an account-takeover pattern)
    detail = {**load_event("eventbridge/transaction_created")["detail"], "transaction_id": "e2e-1"}
    created_id = put(events_runtime, "aib.payments", "Transaction Created", detail)
    # WHEN fraud_events scores it and alerts routes the Fraud Suspected that follows
    [got] = wait_for(lambda: webhook.for_key("e2e-1"))
    # THEN the webhook's alert carries the chain: same correlation id, caused by the creation
    alert = got.json()
    assert alert["correlation_id"] == created_id
    assert alert["detail"]["caused_by"] == created_id
    assert alert["source"] == "aib.fraud" and alert["kind"] == "fraud"
    [suspected] = [
        e
        for e in events_runtime.bus.archived(limit=100, detail_type="Fraud Suspected")
        if e["detail"]["transaction_id"] == "e2e-1"
    ]
    assert alert["alert_id"] == suspected["id"]
    # signed with the secret `aib secrets set` stored for webhook_secret
    ts = got.headers["X-Aib-Timestamp"]
    digest = hmac.new(WEBHOOK_SECRET.encode(), f"{ts}.".encode() + got.body, hashlib.sha256)
    assert got.headers["X-Aib-Signature"] == f"v1={digest.hexdigest()}"
    # AND the local stand-in of the SNS topic got the same alert
    topic = Path(events_runtime.settings.state_dir) / "topics" / "alerts.jsonl"
    lines = wait_for(lambda: [json.loads(x) for x in topic.read_text().splitlines()])
    assert alert in lines


def test_the_pipeline_and_the_scorer_flagging_one_transaction_alert_once(
    events_runtime: LocalRuntime, webhook: Webhook
) -> None:
    # GIVEN the pipeline's Fraud Suspected for txn-7731, published twice (a redelivered chunk)
    sample = load_event("eventbridge/fraud_suspected_pipeline")
    first = put(events_runtime, "aib.pipeline", "Fraud Suspected", sample["detail"])
    wait_for(lambda: webhook.for_key("txn-7731"))
    second = put(events_runtime, "aib.pipeline", "Fraud Suspected", sample["detail"])
    # (the runtime's own delivery of it done first: a replay of one event id while its first
    # invocation is in progress is refused as in progress, not answered)
    wait_for(lambda: (s := events_runtime.bus.stats()).pending + s.in_flight == 0 or None)
    # THEN the second is delivered to alerts and dropped as a duplicate
    host = events_runtime.hosts["alerts"]
    replay = {**sample, "id": second}
    assert host.invoke(replay)["status"] == "duplicate"
    assert [r.json()["alert_id"] for r in webhook.for_key("txn-7731")] == [first]


def test_a_webhook_failing_with_5xx_is_retried_then_dead_lettered_with_the_reason(
    events_runtime: LocalRuntime, webhook: Webhook
) -> None:
    # GIVEN a webhook that answers 503 for this transaction's alert, every time
    webhook.fail("txn-down", 503)
    detail = {**load_event("eventbridge/fraud_suspected")["detail"], "transaction_id": "txn-down"}
    event_id = put(events_runtime, "aib.fraud", "Fraud Suspected", detail)
    # THEN each invocation tried 3 times, the runtime retried once, and the failure queue
    # holds the event with the webhook's error
    record = failure_record(events_runtime, "alerts", event_id)
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["responsePayload"]["errorType"] == "WebhookError"
    assert "failed 3 time(s)" in record["responsePayload"]["errorMessage"]
    assert "HTTP 503" in record["responsePayload"]["errorMessage"]
    assert len(webhook.for_key("txn-down")) == 6


def test_the_lambda_handler_answers_the_sample_aws_events(
    events_runtime: LocalRuntime, webhook: Webhook
) -> None:
    host = events_runtime.hosts["alerts"]
    for name in ("eventbridge/fraud_suspected", "eventbridge/fraud_suspected_pipeline"):
        sample = load_event(name)
        sample["id"] = f"lambda-{name}"
        sample["detail"]["transaction_id"] = f"lambda-{name}"
        answer = host.invoke(sample)
        assert answer["status"] == "sent"
        assert answer["sinks"] == ["log", "webhook", "sns"]
