"""alerts' routing without the runtime: the webhook's exact body and signature, deduplication,
rate limiting, retries and configuration errors (a loopback webhook, SQLite state)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Literal

import pytest

from aibackend.contracts import ContractError, Detail, Parsed, parse
from aibackend.errors import ConfigError
from aibackend.settings import PlatformSettings
from functions.alerts.alerting import Alert, alert_of, route
from functions.alerts.settings import AlertSettings
from functions.alerts.sinks import (
    LocalTopicSink,
    WebhookError,
    WebhookRejectedError,
    WebhookSink,
    build_sinks,
    encode,
)
from functions.alerts.state import SqliteAlertState
from tests.conftest import load_event

from .conftest import Webhook

SECRET = b"routing-secret"
NOW = 1_795_000_000.0  # a fixed instant inside one rate window (windows are epoch-aligned)


def fraud_alert(transaction: str, card: str = "card-1", event_id: str | None = None) -> Alert:
    event = load_event("eventbridge/fraud_suspected")
    event["id"] = event_id or f"evt-{transaction}"
    event["detail"].update(transaction_id=transaction, card_id=card)
    return alert_of(parse(event))


@pytest.fixture
def state(tmp_path: Path) -> SqliteAlertState:
    return SqliteAlertState(tmp_path / "alerts-state.db")


@pytest.fixture
def hook_sink(webhook: Webhook) -> WebhookSink:
    return WebhookSink(
        url=webhook.url, secret=SECRET, timeout_s=1, attempts=3, backoff_s=0, sleep=lambda _: None
    )


LIMITS = AlertSettings(dedup_window_s=600, rate_limit=3, rate_window_s=3600)


def test_the_webhook_receives_the_alert_json_signed_with_the_secret(
    webhook: Webhook, hook_sink: WebhookSink, state: SqliteAlertState
) -> None:
    # GIVEN the sample real-time Fraud Suspected event
    alert = fraud_alert("txn-sig", card="card-sig", event_id="9d3a6f10-sig")
    # WHEN it is routed
    outcome = route(alert, state, [hook_sink], LIMITS, NOW)
    # THEN the webhook got exactly this JSON (keys sorted, compact)...
    assert outcome.status == "sent" and outcome.sinks == ("webhook",)
    [got] = webhook.for_key("txn-sig")
    assert (
        got.body
        == json.dumps(
            {
                "alert_id": "9d3a6f10-sig",
                "correlation_id": "0b4f5a1e-7c2d-4e8a-9f10-3a5b6c7d8e01",
                "detail": {
                    "caused_by": "0b4f5a1e-7c2d-4e8a-9f10-3a5b6c7d8e01",
                    "card_id": "card-sig",
                    "correlation_id": "0b4f5a1e-7c2d-4e8a-9f10-3a5b6c7d8e01",
                    "decision": "decline",
                    "model": {"name": "fraud", "version": 1},
                    "schema_version": "1",
                    "score": 0.87,
                    "threshold": 0.5,
                    "transaction_id": "txn-sig",
                },
                "detail_type": "Fraud Suspected",
                "key": "txn-sig",
                "kind": "fraud",
                "rate_key": "card-sig",
                "source": "aib.fraud",
                "suppressed_in_previous_window": 0,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
    )
    # ...with an HMAC-SHA256 signature of "<timestamp>.<body>" the receiver can recompute
    ts = got.headers["X-Aib-Timestamp"]
    expected = hmac.new(SECRET, f"{ts}.".encode() + got.body, hashlib.sha256).hexdigest()
    assert got.headers["X-Aib-Signature"] == f"v1={expected}"
    assert got.headers["X-Aib-Alert-Id"] == "9d3a6f10-sig"
    assert got.headers["Content-Type"] == "application/json"


def test_a_second_alert_for_the_same_transaction_within_the_window_is_dropped(
    webhook: Webhook, hook_sink: WebhookSink, state: SqliteAlertState
) -> None:
    # GIVEN the pipeline and the real-time scorer both flag transaction txn-dup
    first = route(fraud_alert("txn-dup", event_id="e1"), state, [hook_sink], LIMITS, NOW)
    second = route(fraud_alert("txn-dup", event_id="e2"), state, [hook_sink], LIMITS, NOW + 599)
    # THEN one alert goes out; once the window has passed the key alerts again
    assert (first.status, second.status) == ("sent", "duplicate")
    later = route(fraud_alert("txn-dup", event_id="e3"), state, [hook_sink], LIMITS, NOW + 600)
    assert later.status == "sent"
    assert [r.headers["X-Aib-Alert-Id"] for r in webhook.for_key("txn-dup")] == ["e1", "e3"]


def test_alerts_over_the_rate_limit_are_suppressed_counted_and_reported_later(
    webhook: Webhook, hook_sink: WebhookSink, state: SqliteAlertState
) -> None:
    # GIVEN five suspected transactions of one card in one window (limit 3 per window)
    outcomes = [
        route(fraud_alert(f"txn-rate-{i}", card="card-rate"), state, [hook_sink], LIMITS, NOW + i)
        for i in range(5)
    ]
    # THEN three go out, the other two are suppressed and counted
    assert [(o.status, o.suppressed) for o in outcomes] == [
        ("sent", 0),
        ("sent", 0),
        ("sent", 0),
        ("suppressed", 1),
        ("suppressed", 2),
    ]
    sent = [r for r in webhook.received if r.json()["rate_key"] == "card-rate"]
    assert len(sent) == 3
    # AND the card's first alert of the next window says how many were suppressed before it
    next_window = (NOW // 3600 + 1) * 3600
    route(fraud_alert("txn-rate-next", card="card-rate"), state, [hook_sink], LIMITS, next_window)
    [after] = webhook.for_key("txn-rate-next")
    assert after.json()["suppressed_in_previous_window"] == 2
    # other cards are not limited by this one
    assert route(fraud_alert("txn-other", card="c2"), state, [], LIMITS, NOW).status == "sent"


def test_a_retried_event_keeps_its_claim_and_its_rate_slot(
    webhook: Webhook, hook_sink: WebhookSink, state: SqliteAlertState
) -> None:
    # GIVEN an alert whose webhook failed every attempt (the event will be retried)
    webhook.fail("txn-retry", 503)
    alert = fraud_alert("txn-retry", card="card-retry", event_id="evt-retry")
    with pytest.raises(WebhookError, match="failed 3 time"):
        route(alert, state, [hook_sink], LIMITS, NOW)
    # WHEN the same event comes back after the receiver recovered
    webhook.fail("txn-retry", 200)
    outcome = route(alert, state, [hook_sink], LIMITS, NOW + 60)
    # THEN it is sent: its own claim and rate slot do not count against it
    assert outcome.status == "sent"
    assert len(webhook.for_key("txn-retry")) == 4  # 3 failed attempts, then the retry


def test_a_5xx_is_retried_within_the_invocation(webhook: Webhook, hook_sink: WebhookSink) -> None:
    webhook.fail("txn-flaky", 502, 200)
    hook_sink.send(fraud_alert("txn-flaky"))
    assert len(webhook.for_key("txn-flaky")) == 2


def test_a_4xx_is_not_retried(webhook: Webhook, hook_sink: WebhookSink) -> None:
    webhook.fail("txn-refused", 400)
    with pytest.raises(WebhookRejectedError, match="HTTP 400"):
        hook_sink.send(fraud_alert("txn-refused"))
    assert len(webhook.for_key("txn-refused")) == 1


def test_an_unreachable_webhook_fails_after_its_attempts() -> None:
    sink = WebhookSink(
        url="http://127.0.0.1:9/x", secret=SECRET, timeout_s=0.5, attempts=2, sleep=lambda _: None
    )
    with pytest.raises(WebhookError, match="failed 2 time"):
        sink.send(fraud_alert("txn-nowhere"))


def test_the_local_topic_keeps_one_json_line_per_alert(tmp_path: Path) -> None:
    sink = LocalTopicSink(tmp_path / "topics" / "alerts.jsonl")
    alerts = [fraud_alert("t1"), fraud_alert("t2")]
    for a in alerts:
        sink.send(a)
    assert (tmp_path / "topics" / "alerts.jsonl").read_bytes() == b"".join(
        encode(a) + b"\n" for a in alerts
    )


class AnomalyLike(Detail):
    """Stands in for the IoT contract (its own module, another change): what alerts read."""

    detail_type = "Anomaly Detected"
    version = "1"
    schema_version: Literal["1"] = "1"
    device_id: str | None = None
    score: float = 0.0


def test_an_anomaly_alerts_per_device() -> None:
    parsed = Parsed("evt-a", "aib.iot", AnomalyLike(device_id="pump-7", score=0.97))
    alert = alert_of(parsed)
    assert (alert.kind, alert.key, alert.rate_key) == ("anomaly", "pump-7", "pump-7")
    with pytest.raises(ContractError, match="has no device_id"):
        alert_of(Parsed("evt-b", "aib.iot", AnomalyLike()))


def test_the_pipeline_fraud_suspected_alerts_by_transaction_and_card() -> None:
    alert = alert_of(parse(load_event("eventbridge/fraud_suspected_pipeline")))
    assert (alert.key, alert.rate_key, alert.source) == ("txn-7731", "card-0093", "aib.pipeline")
    assert alert.correlation_id == "run-20261127-0600"  # the chain is the file's run


def test_a_pipeline_fraud_suspected_from_before_versions_starts_its_own_chain() -> None:
    # GIVEN the pipeline's event as it was published before it carried a version and a chain
    event = load_event("eventbridge/fraud_suspected_pipeline")
    del event["detail"]["schema_version"], event["detail"]["correlation_id"]
    # WHEN it is routed THEN it reads as version 1 and its own id is its chain's
    alert = alert_of(parse(event))
    assert alert.key == "txn-7731"
    assert alert.correlation_id == alert.alert_id == event["id"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALERT_SINKS": "log,pager"}, "ALERT_SINKS='log,pager': Input should be 'log', 'webhook'"),
        ({"ALERT_SINKS": " , "}, "ALERT_SINKS=' , ': list one or more of log, webhook, sns"),
        ({"ALERT_SINKS": "webhook"}, "ALERT_WEBHOOK_URL='': the webhook sink needs an http(s) URL"),
        (
            {"ALERT_WEBHOOK_ATTEMPTS": "0"},
            "ALERT_WEBHOOK_ATTEMPTS='0': Input should be greater than or equal to 1",
        ),
        ({"ALERT_RATE_LIMIT": "many"}, "ALERT_RATE_LIMIT='many': Input should be a valid integer"),
    ],
)
def test_settings_errors_name_the_variable_and_what_to_fix(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as e:
        AlertSettings.from_env(env)
    assert message in str(e.value)
    assert str(e.value).startswith("alerts settings (function.toml [environment]): ")


def test_settings_from_the_declared_environment() -> None:
    settings = AlertSettings.from_env(
        {"ALERT_SINKS": "log, webhook,sns", "ALERT_WEBHOOK_URL": "https://hooks.example/a"}
    )
    assert settings.sinks == ("log", "webhook", "sns")
    assert (settings.rate_limit, settings.dedup_window_s) == (5, 3600)


def test_the_declared_sinks_are_built_in_order(tmp_path: Path) -> None:
    settings = AlertSettings(sinks=("sns", "log", "webhook"), webhook_url="http://127.0.0.1:9/")
    sinks = build_sinks(PlatformSettings(state_dir=tmp_path), settings, print, lambda: "s3cret")
    assert [type(s).__name__ for s in sinks] == ["LocalTopicSink", "LogSink", "WebhookSink"]
    [hook] = [s for s in sinks if isinstance(s, WebhookSink)]
    assert hook.secret == b"s3cret" and hook.attempts == settings.webhook_attempts
