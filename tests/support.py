"""Helpers shared by the integration tests (importable: `from tests.support import ...`)."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from starlette.testclient import TestClient

from aibackend.auth.local import LocalAccess
from aibackend.catalog import Catalog, load_catalog
from aibackend.local.gateway import build_gateway
from aibackend.local.host import Host
from aibackend.local.lock import StateLock
from aibackend.local.runtime import LocalRuntime
from aibackend.settings import PlatformSettings, model_version_env

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
T = TypeVar("T")

#: Variables a runtime exports for its functions; cleared around each test runtime.
RUNTIME_ENV = ("AIB_STATE_DIR", "AIB_ADAPTERS", "AIB_MODEL_BUCKET", "AIB_CAPTURE")


def create_data_table(client: Any, name: str) -> None:
    """A data table as CDK makes it from `[resources] tables` (partition key `id`), e.g. under
    moto."""
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def create_registry_table(client: Any, name: str) -> None:
    """The model registry's DynamoDB table as AibModels declares it (pk, sk), e.g. under moto."""
    client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def wait_for(cond: Callable[[], T], timeout: float = 20.0) -> T:
    """Poll `cond` until it returns something truthy (returned), or fail the test."""
    deadline = time.monotonic() + timeout
    while not (got := cond()):
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met in {timeout} s")
        time.sleep(0.05)
    return got


def write_functions(root: Path, functions: Mapping[str, tuple[str, str]]) -> Path:
    """Function packages from `{name: (function.toml, handler.py)}`; returns `root`."""
    for name, (toml, code) in functions.items():
        d = root / name
        d.mkdir(parents=True)
        (d / "__init__.py").write_text("")
        (d / "function.toml").write_text(textwrap.dedent(toml))
        (d / "handler.py").write_text(textwrap.dedent(code))
    return root


@contextmanager
def running_runtime(
    functions: Path,
    state: Path,
    *,
    seed_state: Path | None = None,
    isolate: bool = False,
    sources: bool = True,
) -> Iterator[LocalRuntime]:
    """A started LocalRuntime on a clean environment, restored afterwards.

    `seed_state` is copied to `state` first (e.g. the session's trained `fraud_state`).
    """
    if seed_state is not None:
        shutil.copytree(seed_state, state)
    saved = dict(os.environ)
    catalog = load_catalog(functions)
    declared = {k for spec in catalog.functions for k in spec.environment}
    pins = {model_version_env(m) for m in catalog.model_names}
    for var in (*RUNTIME_ENV, *declared, *pins):
        os.environ.pop(var, None)
    os.environ["AIB_STATE_DIR"] = str(state)
    rt = LocalRuntime(catalog, PlatformSettings(state_dir=state), isolate=isolate)
    # As `aib dev` does: the folder's lock says it is served (`aib simulate` asks).
    lock = StateLock(state)
    lock.acquire("in-process test runtime")
    try:
        rt.start(sources=sources)
        yield rt
    finally:
        rt.stop()
        lock.release()
        os.environ.clear()
        os.environ.update(saved)


#: Handler code defining `record(name, item)`: appends `item` to `<state>/seen/<name>.jsonl`,
#: the observable effect of test functions (read back with `seen`).
RECORDER = """
import json, os
from pathlib import Path

def record(name, item):
    d = Path(os.environ["AIB_STATE_DIR"]) / "seen"
    d.mkdir(parents=True, exist_ok=True)
    with (d / f"{name}.jsonl").open("a") as f:
        f.write(json.dumps(item) + "\\n")
"""


def seen(state: Path, name: str) -> list[dict[str, Any]]:
    """Lines a test handler appended to `<state>/seen/<name>.jsonl`."""
    f = state / "seen" / f"{name}.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


def gateway_client(
    catalog: Catalog,
    hosts: Mapping[str, Host],
    access: LocalAccess,
    *,
    health: Callable[[], dict[str, Any]] | None = None,
    keyed: bool = True,
    scopes: tuple[str, ...] = (),
) -> TestClient:
    """A client of the local gateway that sends the development key (unless `keyed=False`)
    and, given `scopes`, a bearer token carrying them."""
    app = build_gateway(catalog, hosts, health=health or (lambda: {"status": "ok"}), access=access)
    headers = {"x-api-key": access.ensure_dev_key()[0]} if keyed else {}
    if scopes:
        headers.update(bearer(access, *scopes))
    return TestClient(app, headers=headers)


def runtime_client(
    rt: LocalRuntime, *, keyed: bool = True, scopes: tuple[str, ...] = ()
) -> TestClient:
    """`gateway_client` for a running runtime (its own keys, plans and health)."""
    return gateway_client(
        rt.catalog, rt.hosts, rt.access, health=rt.health, keyed=keyed, scopes=scopes
    )


def bearer(access: LocalAccess, *scopes: str, **issue: Any) -> dict[str, str]:
    """An Authorization header with a development token carrying `scopes`."""
    return {"Authorization": f"Bearer {access.signer.issue('tests', scopes, **issue)}"}


def sqs_batch(queue: str, *events: dict[str, Any]) -> dict[str, Any]:
    """The SQS event Lambda invokes a consumer of `queue` with, one message per EventBridge
    event (as a rule filling the queue, `[[queues.events]]`, puts them there)."""
    from datetime import UTC, datetime

    from aibackend.events.shapes import sqs_event
    from aibackend.ports import QueueMessage

    messages = [
        QueueMessage(
            message_id=f"msg-{e['id']}",
            receipt_handle=f"rh-{e['id']}",
            body=json.dumps(e),
            md5_of_body="",
        )
        for e in events
    ]
    return sqs_event(messages, queue_name=queue, now=datetime.now(UTC))
