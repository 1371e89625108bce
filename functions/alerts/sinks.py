"""Where alerts go: the log, a webhook (HMAC-signed JSON POST) and an SNS topic."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aibackend.settings import PlatformSettings, physical_name

from .alerting import Alert, Sink
from .settings import AlertSettings

#: Header carrying `v1=<hex HMAC-SHA256 of "<timestamp>.<body>">` under the webhook secret.
SIGNATURE_HEADER = "X-Aib-Signature"
#: Header carrying the signing time (Unix seconds); receivers refuse old ones (replays).
TIMESTAMP_HEADER = "X-Aib-Timestamp"
#: The alert's id (the event's id): the same alert delivered twice has the same one.
ALERT_ID_HEADER = "X-Aib-Alert-Id"
#: The SNS topic's logical name (`[resources] topics`).
TOPIC = "alerts"


def encode(alert: Alert) -> bytes:
    """The JSON every sink sends: compact, keys sorted, UTF-8."""
    return json.dumps(alert.body(), sort_keys=True, separators=(",", ":")).encode()


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """`v1=` + hex HMAC-SHA256 of `<timestamp>.<body>`: what the receiver recomputes."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


class LogSink:
    name = "log"

    def __init__(self, log: Callable[..., None]) -> None:
        self._log = log

    def send(self, alert: Alert) -> None:
        self._log("alert", extra={"alert": alert.body()})


class WebhookError(RuntimeError):
    """The webhook kept failing (5xx, timeout, refused connection); the event is retried."""


class WebhookRejectedError(RuntimeError):
    """The webhook answered 4xx: it refuses this request; retrying sends the same request."""


@dataclass(frozen=True)
class WebhookSink:
    """POST the alert as JSON, signed; retries 5xx, timeouts and connection errors `attempts`
    times in all (waits `backoff_s`, doubling), then raises `WebhookError`."""

    url: str
    secret: bytes
    timeout_s: float = 2.0
    attempts: int = 3
    backoff_s: float = 0.2
    name: str = "webhook"
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    def request(self, alert: Alert) -> urllib.request.Request:
        body = encode(alert)
        ts = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: signature(self.secret, ts, body),
            ALERT_ID_HEADER: alert.alert_id,
        }
        return urllib.request.Request(self.url, data=body, headers=headers, method="POST")

    def send(self, alert: Alert) -> None:
        request = self.request(alert)
        failures: list[str] = []
        for attempt in range(self.attempts):
            if attempt:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    response.read()
                return
            except urllib.error.HTTPError as e:
                if e.code < 500:
                    raise WebhookRejectedError(
                        f"webhook {self.url} refused alert {alert.alert_id}: HTTP {e.code}"
                    ) from e
                failures.append(f"HTTP {e.code}")
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                failures.append(type(e).__name__ if not str(e) else str(e))
        raise WebhookError(
            f"webhook {self.url} failed {self.attempts} time(s) for alert {alert.alert_id}: "
            f"{'; '.join(failures)}"
        )


class SnsSink:
    """Publish the alert to the topic (its ARN in `AIB_TOPIC_ALERTS`, set by CDK)."""

    name = "sns"

    def __init__(self, topic_arn: str, client: Any = None) -> None:
        self.topic_arn = topic_arn
        if client is None:
            import boto3

            client = boto3.client("sns")
        self._sns = client

    def send(self, alert: Alert) -> None:
        self._sns.publish(
            TopicArn=self.topic_arn,
            Subject=f"aib alert: {alert.detail_type} {alert.key}"[:100],
            Message=encode(alert).decode(),
            MessageAttributes={
                "kind": {"DataType": "String", "StringValue": alert.kind},
                "alert_id": {"DataType": "String", "StringValue": alert.alert_id},
            },
        )


class LocalTopicSink:
    """`aib dev`'s stand-in for the SNS topic: one JSON line per alert in
    `<state>/topics/alerts.jsonl` (`tail -f` it to watch alerts arrive)."""

    name = "sns"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def send(self, alert: Alert) -> None:
        with self.path.open("ab") as f:
            f.write(encode(alert) + b"\n")


def build_sinks(
    settings: PlatformSettings,
    alerts: AlertSettings,
    log: Callable[..., None],
    secret: Callable[[], str],
) -> Sequence[Sink]:
    """The sinks `alerts.sinks` names; `secret()` reads the webhook's signing secret (only
    when the webhook sink is on)."""
    sinks: list[Sink] = []
    for name in alerts.sinks:
        if name == "log":
            sinks.append(LogSink(log))
        elif name == "webhook":
            sinks.append(
                WebhookSink(
                    url=alerts.webhook_url,
                    secret=secret().encode(),
                    timeout_s=alerts.webhook_timeout_s,
                    attempts=alerts.webhook_attempts,
                )
            )
        elif settings.adapters == "aws":
            sinks.append(SnsSink(physical_name("topic", TOPIC)))
        else:
            sinks.append(LocalTopicSink(settings.state_dir / "topics" / f"{TOPIC}.jsonl"))
    return sinks
