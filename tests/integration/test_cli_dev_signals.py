"""`aib dev` stopped by SIGTERM (a supervisor, `kill`) cleans up like Ctrl-C: with `--isolate`,
no worker process outlives it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import ROOT, write_functions

pytestmark = pytest.mark.slow

TOML = 'description = "idle"\nhandler = "handler.handler"\n'
HANDLER = "def handler(event, context):\n    return {}\n"


def children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text().split()
        out |= {int(p) for p in text}
    return out


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status  # a zombie has exited


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_every_isolated_worker(tmp_path: Path, sig: signal.Signals) -> None:
    # GIVEN `aib dev --isolate` serving two functions, each with a warm worker process
    functions = write_functions(
        tmp_path / "functions", {"one": (TOML, HANDLER), "two": (TOML, HANDLER)}
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIB_")}
    cmd = [sys.executable, "-m", "aibackend.cli", "--state-dir", str(tmp_path / "state")]
    cmd += ["--functions", str(functions), "dev", "--no-train", "--isolate", "--port", str(port)]
    log = (tmp_path / "dev.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "dev.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "aib dev did not start in 60 s"
                time.sleep(0.1)
        workers = children(proc.pid)
        assert len(workers) >= 2
        # WHEN it receives the signal
        proc.send_signal(sig)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    # THEN it exits (128 + SIGTERM, or 0 after Ctrl-C) and none of its workers is left
    assert code in (0, 128 + signal.SIGTERM)
    deadline = time.monotonic() + 10
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if alive(w)], (tmp_path / "dev.log").read_text()[-2000:]
