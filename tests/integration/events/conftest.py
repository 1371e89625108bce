"""Fixtures of the event-driven tests: a loopback webhook receiver and a runtime that serves
fraud_events and alerts (its webhook pointed at the receiver) on the trained project state."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aibackend.local.runtime import LocalRuntime
from aibackend.ports import PutEvent
from aibackend.secrets import set_local_secret
from aibackend.settings import PlatformSettings
from tests.support import FUNCTIONS, running_runtime, wait_for


def put(runtime: LocalRuntime, source: str, detail_type: str, detail: dict[str, Any]) -> str:
    """Put one event on the runtime's bus; its id."""
    [event_id] = runtime.bus.put_events(
        [PutEvent(source=source, detail_type=detail_type, detail=detail)]
    ).event_ids
    assert event_id is not None
    return event_id


def failure_record(runtime: LocalRuntime, function: str, event_id: str) -> dict[str, Any]:
    """The on-failure record of `event_id` in the function's failure queue (waits for it)."""
    queue = runtime.queues.get(f"{function}-failures")

    def find() -> dict[str, Any] | None:
        for message in queue.receive(10, visibility_timeout_s=0):
            record: dict[str, Any] = json.loads(message.body)
            if record["requestPayload"]["id"] == event_id:
                return record
        return None

    return wait_for(find, timeout=30)


WEBHOOK_SECRET = "whsec-test-7c1f"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Webhook:
    """A loopback HTTP server that records every POST. It answers `status_for(body)`: 200 by
    default, or the status queued for an alert key with `fail(key, *statuses)` (one per request,
    the last one repeating)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    plans: dict[str, list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, key: str, *statuses: int) -> None:
        with self.lock:
            self.plans[key] = list(statuses)

    def status_for(self, body: bytes) -> int:
        key = json.loads(body).get("key", "")
        with self.lock:
            plan = self.plans.get(key)
            if not plan:
                return 200
            return plan.pop(0) if len(plan) > 1 else plan[0]

    def for_key(self, key: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.json().get("key") == key]


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with hook.lock:
                hook.received.append(Received(dict(self.headers.items()), body))
            status = hook.status_for(body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()


#: Short waits: the runtime retries a failed event no sooner than the function's timeout, so
#: with timeout_s 2 and one retry a failing event reaches the failure queue in seconds.
QUICK_RETRIES = {"timeout_s = 10": "timeout_s = 2", "max_attempts = 2": "max_attempts = 1"}


def declaration(function: str, edits: dict[str, str]) -> str:
    """functions/<function>/function.toml with `edits` (old -> new text) applied."""
    text = (FUNCTIONS / function / "function.toml").read_text()
    for old, new in edits.items():
        assert old in text, f"functions/{function}/function.toml no longer has {old!r}"
        text = text.replace(old, new)
    return text


def alerts_declaration(webhook_url: str) -> str:
    """alerts with every sink on and the webhook at `webhook_url`."""
    return declaration(
        "alerts",
        {
            'ALERT_SINKS = "log,sns"': 'ALERT_SINKS = "log,webhook,sns"',
            'ALERT_WEBHOOK_URL = ""': f'ALERT_WEBHOOK_URL = "{webhook_url}"',
            'ALERT_WEBHOOK_TIMEOUT_S = "2"': 'ALERT_WEBHOOK_TIMEOUT_S = "0.5"',
            'ALERT_RATE_LIMIT = "5"': 'ALERT_RATE_LIMIT = "3"',
            **QUICK_RETRIES,
        },
    )


@pytest.fixture(scope="module")
def event_functions(tmp_path_factory: pytest.TempPathFactory, webhook: Webhook) -> Path:
    """A functions folder with fraud_events and alerts (pointed at `webhook`), both retrying
    quickly."""
    root = tmp_path_factory.mktemp("event-functions") / "functions"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(FUNCTIONS / "fraud_events", root / "fraud_events", ignore=ignore)
    shutil.copytree(FUNCTIONS / "alerts", root / "alerts", ignore=ignore)
    (root / "alerts" / "function.toml").write_text(alerts_declaration(webhook.url))
    # fraud_events reads batches from its queue: a failed message returns after the queue's
    # visibility timeout (six times timeout_s), retried until max_receive_count.
    quick_visibility = {"timeout_s = 10": "timeout_s = 2"}
    (root / "fraud_events" / "function.toml").write_text(
        declaration("fraud_events", quick_visibility)
    )
    return root


@pytest.fixture(scope="module")
def events_runtime(
    fraud_state: Path, event_functions: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRuntime]:
    state = tmp_path_factory.mktemp("events-state") / "state"
    shutil.copytree(fraud_state, state)
    set_local_secret(PlatformSettings(state_dir=state), "webhook_secret", WEBHOOK_SECRET)
    with running_runtime(event_functions, state) as rt:
        yield rt
