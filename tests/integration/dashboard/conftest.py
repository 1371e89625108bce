"""A runtime serving fraud (HTTP and events) with the monitoring services, on the trained
fraud state, reachable over real HTTP for a browser; and the browser."""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from aibackend.local.runtime import LocalRuntime
from tests.support import FUNCTIONS, running_runtime, wait_for

#: The browser: `AIB_CHROMIUM` if set, else the first Chromium-family binary on PATH (Debian's
#: `chromium`, Ubuntu's `chromium-browser`, or Google Chrome on hosted CI runners).
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> Path | None:
    if configured := os.environ.get("AIB_CHROMIUM"):
        return Path(configured)
    found = next((p for p in map(shutil.which, BROWSERS) if p), None)
    return Path(found) if found else None


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVED = (
    "fraud_score",
    "fraud_events",
    "monitor_capture",
    "monitor_feedback",
    "monitor_models",
)


def dashboard_functions(root: Path) -> Path:
    """The served functions' declarations, with the capture queue's batching window at 1 s
    (the least SQS allows for its batch size of 100; a test waits 1 s for captures, not 5)
    and groups of 30 labelled rows compared for bias (a short test labels a few hundred
    predictions an hour, not thousands)."""
    functions = root / "functions"
    for name in SERVED:
        shutil.copytree(
            FUNCTIONS / name, functions / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    _sub(
        functions / "monitor_capture" / "function.toml",
        r"(?m)^batching_window_s = .*$",
        "batching_window_s = 1",
    )
    shutil.copy(FUNCTIONS / "monitoring.toml", functions / "monitoring.toml")
    _sub(functions / "monitoring.toml", r"(?m)^min_group_size = .*$", "min_group_size = 30")
    return functions


def _sub(path: Path, pattern: str, repl: str) -> None:
    text, n = re.subn(pattern, repl, path.read_text())
    assert n == 1, f"{path}: {pattern} not found"
    path.write_text(text)


@dataclass
class Served:
    """An ASGI app on a loopback port, in a thread (what `aib dev` runs with uvicorn)."""

    base: str
    server: uvicorn.Server
    thread: threading.Thread


def serve(app: Any) -> Served:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=20)
    return Served(f"http://127.0.0.1:{port}", server, thread)


def stop(served: Served) -> None:
    served.server.should_exit = True
    served.thread.join(timeout=10)


@pytest.fixture(scope="module")
def dashboard_runtime(
    tmp_path_factory: pytest.TempPathFactory, fraud_state: Path
) -> Iterator[tuple[LocalRuntime, str]]:
    """The runtime and the base URL its gateway answers on."""
    root = tmp_path_factory.mktemp("dashboard")
    functions = dashboard_functions(root)
    with running_runtime(functions, root / "state", seed_state=fraud_state) as rt:
        served = serve(rt.gateway())
        try:
            yield rt, served.base
        finally:
            stop(served)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright (no browser download)."""
    chromium = find_browser()
    if chromium is None or not chromium.exists():
        pytest.fail(
            f"no browser ({chromium or ', '.join(BROWSERS)} not found): the dashboard's browser "
            "tests need Chromium; install Debian's with `make browser` (apt-get install -y "
            "chromium), or point AIB_CHROMIUM at one"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "Python Playwright is missing: install the dev dependencies (`pip install -e "
            "'.[dev]'`: playwright; never `playwright install`: Debian's chromium is used)"
        )

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
