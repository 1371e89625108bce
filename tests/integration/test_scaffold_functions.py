"""`aib functions new`: each kind of function it writes passes the project's lint, its own
test, and is served by the local runtime through the trigger it declares."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aibackend.cli import main
from aibackend.local.logs import log_path, read_lines
from aibackend.local.runtime import LocalRuntime
from aibackend.local.triggers import DEFAULT_BUS, rule_arn, schedule_rule_name
from aibackend.ports import PutEvent
from tests.support import ROOT, running_runtime, runtime_client, wait_for

pytestmark = pytest.mark.slow

#: One function of each kind; the HTTP one has the longest name a function may have, so the
#: lines that carry it are as long as they get.
LONGEST = "orders_api_" + "x" * 37
KINDS: dict[str, list[str]] = {
    LONGEST: ["--http"],
    "orders_admin": ["--http", "--scopes", "orders:admin"],
    "order_worker": ["--queue", "orders"],
    "view_counter": ["--event", "aib.shop", "Product Viewed"],
    "view_batches": ["--event", "aib.shop", "Product Viewed", "--batch"],
    "nightly_report": ["--schedule", "cron(0 6 * * ? *)"],
    "label_files": ["--bucket", "uploads", "--prefix", "in/", "--suffix", ".csv"],
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder with one function of each kind and their tests, written by the
    command."""
    root = tmp_path_factory.mktemp("project")
    (root / "functions").mkdir()
    (root / "tests").mkdir()
    for name, trigger in KINDS.items():
        assert (
            main(["--functions", str(root / "functions"), "functions", "new", name, *trigger]) == 0
        )
    return root


@pytest.fixture(scope="module")
def runtime(project: Path) -> Iterator[LocalRuntime]:
    with running_runtime(project / "functions", project / "state") as rt:
        yield rt


def logged(state: Path, function: str, message: str) -> list[dict[str, Any]]:
    lines = (line.json for line in read_lines(log_path(state, function)))
    return [j for j in lines if j and j.get("message") == message]


def test_what_it_writes_passes_the_projects_lint(project: Path) -> None:
    # GIVEN the functions and tests the command wrote
    files = [str(p) for p in project.rglob("*.py")]
    assert len(files) == 3 * len(KINDS)  # __init__.py, handler.py and a test each
    config = ["--config", str(ROOT / "pyproject.toml")]
    # WHEN ruff checks them as `make lint` does THEN it finds nothing to change
    for check in (["check", *config], ["format", "--check", *config]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *check, *files], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_tests_it_writes_pass(project: Path) -> None:
    # WHEN the generated tests run, as `make test` runs them
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/functions"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    # THEN every one passes (two for each HTTP function, one for each other)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "9 passed" in done.stdout


def test_the_http_function_is_served_behind_the_key_its_routes_declare(
    runtime: LocalRuntime,
) -> None:
    prefix = "/v1/" + LONGEST.replace("_", "-")
    keyed, anonymous = runtime_client(runtime), runtime_client(runtime, keyed=False)
    # GIVEN the runtime serving the scaffolded HTTP function
    # WHEN its echo route is called with the development key THEN it answers
    r = keyed.post(f"{prefix}/echo", json={"text": "hello"})
    assert (r.status_code, r.json()) == (200, {"text": "hello", "length": 5})
    # AND without a key it is refused; its health check is public; its OpenAPI is merged
    refused = anonymous.post(f"{prefix}/echo", json={"text": "hello"})
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert anonymous.get(f"{prefix}/health").json() == {"status": "ok"}
    paths = keyed.get("/openapi.json").json()["paths"]
    assert f"{prefix}/echo" in paths


def test_an_http_function_scaffolded_with_scopes_needs_a_token_carrying_them(
    runtime: LocalRuntime,
) -> None:
    echo = "/v1/orders-admin/echo"
    body = {"text": "hi"}
    # GIVEN the runtime serving a function scaffolded with --scopes orders:admin
    # WHEN its echo route is called with the key alone THEN a token is asked for
    assert runtime_client(runtime).post(echo, json=body).status_code == 401
    # AND a token with another scope is refused, one with the declared scope answered
    other = runtime_client(runtime, scopes=("orders:read",)).post(echo, json=body)
    assert other.status_code == 403
    admin = runtime_client(runtime, scopes=("orders:admin",)).post(echo, json=body)
    assert (admin.status_code, admin.json()) == (200, {"text": "hi", "length": 2})


def test_the_queue_event_and_object_functions_receive_what_their_triggers_deliver(
    runtime: LocalRuntime, project: Path, tmp_path: Path
) -> None:
    state = project / "state"
    cli = ["--state-dir", str(state), "--functions", str(project / "functions")]
    csv = tmp_path / "labels.csv"
    csv.write_text("id,label\n1,0\n")
    # WHEN a message is sent to the queue, an event put on the bus and a file dropped in
    # the bucket, as a user does with the CLI
    assert main([*cli, "send", "orders", json.dumps({"order": 7})]) == 0
    detail = json.dumps({"item_id": "i1"})
    put = ["put-events", "--source", "aib.shop", "--detail-type", "Product Viewed"]
    assert main([*cli, *put, "--detail", detail]) == 0
    assert main([*cli, "put", "uploads", "in/labels.csv", str(csv)]) == 0
    # THEN each function handled its own (read back from its log, as `aib logs` shows it)
    (message,) = wait_for(lambda: logged(state, "order_worker", "message handled"))
    assert message["keys"] == ["order"]
    (event,) = wait_for(lambda: logged(state, "view_counter", "event handled"))
    assert event["detail_type"] == "Product Viewed"
    # AND the same event reached the batch consumer through its queue: the event's id
    (batch,) = wait_for(lambda: logged(state, "view_batches", "events handled"))
    assert batch["event_ids"] == [event["event_id"]]
    (obj,) = wait_for(lambda: logged(state, "label_files", "object handled"))
    assert (obj["key"], obj["size"]) == ("in/labels.csv", csv.stat().st_size)


def test_the_scheduled_function_runs_when_its_rule_fires(runtime: LocalRuntime) -> None:
    # GIVEN the runtime's schedule rule of the scaffolded function (cron: 06:00 UTC daily)
    (spec,) = [f for f in runtime.catalog.functions if f.name == "nightly_report"]
    due = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    # WHEN it fires, as the runtime's scheduler puts it when due
    fired = PutEvent(
        source="aws.events",
        detail_type="Scheduled Event",
        detail={},
        resources=(rule_arn(schedule_rule_name(spec, 0)),),
        time=due,
        bus=DEFAULT_BUS,
    )
    runtime.bus.put_events([fired])
    # THEN the function ran for that time
    (run,) = wait_for(lambda: logged(runtime.settings.state_dir, "nightly_report", "scheduled run"))
    assert run["due"] == "2026-11-28T06:00:00Z"
