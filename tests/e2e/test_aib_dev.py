"""`aib dev` as a user runs it: a real process, a real port, state that survives a restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from aibackend.catalog import load_catalog

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
AIB = [sys.executable, "-m", "aibackend.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(
    method: str, url: str, body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("content-type", "application/json")
    for name, value in headers.items():
        req.add_header(name.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


@contextmanager
def aib_dev(state: Path, log: Path, timeout_s: float = 240) -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIB_")}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*AIB, "--state-dir", str(state), "dev", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"aib dev exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if _http("GET", base + "/health")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"aib dev did not answer in {timeout_s} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_first_start_trains_then_serves_and_a_restart_keeps_the_state(tmp_path: Path) -> None:
    state, log = tmp_path / "state", tmp_path / "aib-dev.log"
    payload = (ROOT / "events" / "payloads" / "transaction.json").read_bytes()
    # GIVEN an empty state folder
    # WHEN aib dev starts for the first time
    with aib_dev(state, log) as base:
        # THEN it made a development key and printed it with a ready curl line
        key = (state / "auth" / "dev-key").read_text().strip()
        printed = log.read_text()
        assert f"development API key (created; `aib keys dev` prints it again): {key}" in printed
        assert f"curl -s {base}/v1/fraud/model -H 'x-api-key: {key}'" in printed
        # AND it trained the demo model and serves it, to the key only
        health = _http("GET", base + "/health")[2]
        # every model a function declares, trained on this first start: version 1 of each
        declared = load_catalog(ROOT / "functions").model_names
        assert health["models"] == dict.fromkeys(declared, 1)
        assert {"fraud", "recommendations", "sentiment", "iot_thermostat"} <= set(declared)
        assert _http("POST", base + "/v1/fraud/score", payload)[0] == 401
        status, headers, body = _http("POST", base + "/v1/fraud/score", payload, x_api_key=key)
        assert status == 200
        assert body["model"] == {"name": "fraud", "version": 1}
        assert 0 <= body["results"][0]["score"] <= 1
        # AND bad input is a problem response naming the field
        status, headers, problem = _http(
            "POST", base + "/v1/fraud/score", b'{"amount": "x"}', x_api_key=key
        )
        assert status == 422
        assert headers["content-type"] == "application/problem+json"
        assert "amount" in {e["field"] for e in problem["errors"]}
        # AND /v2 takes a token from `aib token` as well as the key
        token = subprocess.run(
            [*AIB, "--state-dir", str(state), "token", "--scopes", "predict:fraud"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert _http("POST", base + "/v2/fraud/score", payload, x_api_key=key)[0] == 401
        status, _, v2 = _http(
            "POST",
            base + "/v2/fraud/score",
            payload,
            x_api_key=key,
            authorization=f"Bearer {token}",
        )
        assert status == 200 and v2["results"][0]["risk"]["band"] in {"low", "medium", "high"}
    assert "training the demo model" in log.read_text()
    # WHEN it is restarted on the same state folder
    log.write_text("")
    with aib_dev(state, log) as base:
        # THEN nothing is retrained and the same version answers the same score
        assert _http("GET", base + "/health")[2]["models"] == health["models"]
        assert f"(kept; `aib keys dev` prints it again): {key}" in log.read_text()
        again = _http("POST", base + "/v1/fraud/score", payload, x_api_key=key)[2]
        assert again["results"][0]["score"] == body["results"][0]["score"]
    assert "training the demo model" not in log.read_text()
