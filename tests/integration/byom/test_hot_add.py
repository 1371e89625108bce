"""`aib dev` serves a function folder that appears while it runs (`aib model train` scaffolds
one) without a restart; folders it cannot serve yet are reported once, not fatal."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from aibackend.adapters import model_registry
from aibackend.auth.factory import dev_signing_key
from aibackend.settings import PlatformSettings
from tests.integration.byom.conftest import Workspace, aib
from tests.integration.byom.messy_csv import prices_csv, species_csv
from tests.support import bearer, running_runtime, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def workspace(byom_workspace: Workspace, tmp_path: Path) -> Workspace:
    return byom_workspace.copy(tmp_path / "ws")


def _http(url: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    req.add_header("content-type", "application/json")
    for name, value in headers.items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@contextmanager
def aib_dev(ws: Workspace, log: Path) -> Iterator[str]:
    """`aib dev` as a process on a free port, polling every 0.2 s."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIB_")}
    env["AIB_MODEL_POLL_S"] = "0.2"
    args = ["--functions", str(ws.functions), "--state-dir", str(ws.state)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aibackend.cli",
                *args,
                "dev",
                "--port",
                str(port),
                "--no-train",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"aib dev exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            return _http(base + "/health")[0] == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    try:
        wait_for(up, timeout=60)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_aib_dev_serves_a_model_trained_while_it_runs(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "aib-dev.log"
    with aib_dev(workspace, log) as base:
        key = (workspace.state / "auth" / "dev-key").read_text().strip()
        headers = {"x-api-key": key}
        assert _http(base + "/v1/models/prices/health")[0] == 404
        # WHEN a semicolon-separated, Windows-1252 CSV is trained into its functions folder
        data = prices_csv(workspace.root / "prices.csv")
        args = ["--functions", str(workspace.functions), "--state-dir", str(workspace.state)]
        assert aib(*args, "model", "train", "--csv", str(data), "--target", "Price (€)") == 0
        assert "target 'Price (€)': regression" in capsys.readouterr().out
        # THEN the running process serves it within a poll or two, behind its own scope
        wait_for(lambda: _http(base + "/v1/models/prices/health")[0] == 200, timeout=20)
        signer = dev_signing_key(PlatformSettings(state_dir=workspace.state))
        token = signer.issue("tests", ["predict:prices"])  # what `aib token` prints
        record = {"Surface (m²)": 80.0, "Rooms": 3, "District": "Croix-Rousse", "Garden": True}
        url = base + "/v1/models/prices/predict"
        assert _http(url, record, **headers)[0] == 401  # the key alone is not enough
        status, body = _http(url, record, Authorization=f"Bearer {token}", **headers)
        assert status == 200, body
        assert 250_000 < body["results"][0]["value"] < 600_000
    assert "added function prices (GET /v1/models/prices/health" in log.read_text()


def test_a_folder_that_appears_is_routed_by_the_same_gateway(workspace: Workspace) -> None:
    # GIVEN aib dev started without model tiny's function folder
    tiny = workspace.functions / "tiny"
    shutil.move(tiny, workspace.root / "tiny-function")
    with running_runtime(workspace.functions, workspace.state, sources=False) as rt:
        headers = {"x-api-key": rt.access.ensure_dev_key()[0], **bearer(rt.access, "predict:tiny")}
        client = TestClient(rt.gateway(), headers=headers)
        assert client.post("/v1/models/tiny/predict", json={"x0": 1.0}).status_code == 404
        # WHEN the folder appears
        shutil.move(workspace.root / "tiny-function", tiny)
        # THEN one poll loads it, the gateway already built routes to it, the next finds nothing
        assert rt.poll_functions() == ["tiny"]
        r = client.post("/v1/models/tiny/predict", json={"x0": 1.0, "x1": 0.0})
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["label"] == "pos"
        assert rt.poll_functions() == []
        assert {f["name"] for f in client.get("/health").json()["functions"]} == {"churn", "tiny"}


def _write_function(root: Path, name: str, toml: str) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    (root / name / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    (root / name / "function.toml").write_text(textwrap.dedent(toml))


def test_folders_it_cannot_serve_yet_are_logged_once_each(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    with running_runtime(workspace.functions, workspace.state, sources=False) as rt:
        # GIVEN a queue consumer, a route clash and a model with no production version
        _write_function(
            workspace.functions,
            "consumer",
            """
            handler = "handler.handler"
            [[queues]]
            queue = "orders"
        """,
        )
        _write_function(
            workspace.functions,
            "clash",
            """
            handler = "handler.handler"
            [[routes]]
            method = "GET"
            path = "/v1/models/churn/health"
            access = "public"
        """,
        )
        _write_function(
            workspace.functions,
            "later",
            """
            handler = "handler.handler"
            models = ["later"]
            [[routes]]
            method = "GET"
            path = "/v1/later/hello"
            access = "api_key"
        """,
        )
        with caplog.at_level(logging.WARNING, logger="aib.runtime"):
            # WHEN the runtime polls twice
            assert rt.poll_functions() == []
            assert rt.poll_functions() == []
        # THEN each folder is reported once, saying what to do, and nothing else changed
        messages = "\n".join(r.getMessage() for r in caplog.records)
        assert len(caplog.records) == 3, messages
        assert "it declares queues: restart `aib dev` to wire it" in messages
        assert "route GET /v1/models/churn/health is already served by churn" in messages
        assert "model 'later' has no production version" in messages
        assert set(rt.hosts) == {"churn", "tiny"} and rt.generation == 0


def test_a_training_that_cannot_start_or_fails_says_why_and_scaffolds_nothing(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    data = species_csv(workspace.root / "species.csv")
    args = ["--functions", str(workspace.functions), "--state-dir", str(workspace.state)]
    # WHEN the target is misspelt: refused before any training run, naming the columns
    assert aib(*args, "model", "train", "--csv", str(data), "--target", "specie") == 1
    err = capsys.readouterr().err
    assert "target column 'specie' not found (did you mean 'species'?)" in err
    # WHEN a text column is trained as a regression: the training job fails and says why
    train = ("model", "train", "--csv", str(data), "--target", "colour", "--task", "regression")
    assert aib(*args, *train) == 1
    err = capsys.readouterr().err
    assert "target 'colour' is not numeric" in err and "use --task classification" in err
    # THEN no function was scaffolded and no model registered
    assert not (workspace.functions / "species").exists()
    registry = model_registry(PlatformSettings(state_dir=workspace.state))
    assert registry.list_models() == ["churn", "tiny"]
