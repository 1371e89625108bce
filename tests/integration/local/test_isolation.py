"""`aib dev --isolate`: each function in its own worker processes, failing the way Lambda fails."""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aibackend.auth.local import LocalAccess
from aibackend.catalog import Catalog, load_catalog
from aibackend.errors import AibError
from aibackend.local.isolation import (
    FunctionCrashError,
    FunctionError,
    FunctionInitError,
    FunctionTimeoutError,
    ProcessHost,
)
from aibackend.settings import PlatformSettings
from tests.support import gateway_client

pytestmark = pytest.mark.slow

# One handler for direct invocations ({"op": ...}) and gateway ones (the op is the last segment).
HANDLER = """
import gc, json, os, signal, time

COUNT = 0  # module level: survives between invocations of a warm worker only

def handler(event, context):
    global COUNT
    COUNT += 1
    op = event.get("op") or event["path"].rsplit("/", 1)[-1]
    if op == "raise":
        raise ValueError("bad input 42")
    if op == "hang":
        time.sleep(30)
    if op == "exit":
        os._exit(3)
    if op == "oom":
        os.kill(os.getpid(), signal.SIGKILL)
    if op == "slow":
        time.sleep(0.2)
    body = {
        "count": COUNT,
        "pid": os.getpid(),
        "remaining_ms": context.get_remaining_time_in_millis(),
        "request_id": context.aws_request_id,
        "greeting": os.environ.get("GREETING"),
        "service": os.environ.get("POWERTOOLS_SERVICE_NAME"),
        "frozen": gc.get_freeze_count(),
    }
    if "path" in event:
        return {"statusCode": 200, "headers": {"content-type": "application/json"},
                "body": json.dumps(body)}
    return body
"""

FUNCTIONS = {
    "svc": (
        """
        timeout_s = 1
        environment = { GREETING = "hello from svc" }
        [[routes]]
        method = "GET"
        path = "/v1/svc/{op}"
        access = "api_key"
        """,
        HANDLER,
    ),
    "other": (
        """
        timeout_s = 5
        [[routes]]
        method = "GET"
        path = "/v1/other/{op}"
        access = "api_key"
        """,
        HANDLER,
    ),
    "broken": ("", "raise RuntimeError('no model artifact at /nowhere')\n"),
    "warm": ("provisioned_concurrency = 3\n", HANDLER),
    # INIT succeeds in the first worker to claim the mark file, fails in any other.
    "flaky": (
        "provisioned_concurrency = 2\n",
        "import os\n"
        "try:\n"
        "    os.close(os.open(os.environ['FLAKY_INIT_MARK'], os.O_CREAT | os.O_EXCL))\n"
        "except FileExistsError:\n"
        "    raise RuntimeError('only one worker may start') from None\n"
        "def handler(event, context):\n"
        "    return {}\n",
    ),
}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    root = tmp_path_factory.mktemp("isolation") / "functions"
    for name, (toml, code) in FUNCTIONS.items():
        pkg = root / name
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "handler.py").write_text(textwrap.dedent(code))
        (pkg / "function.toml").write_text(textwrap.dedent(toml))
    return load_catalog(root)


@pytest.fixture
def host(catalog: Catalog) -> Iterator[Callable[[str], ProcessHost]]:
    """Loaded `ProcessHost`s by function name, stopped after the test."""
    started: list[ProcessHost] = []

    def make(name: str) -> ProcessHost:
        h = ProcessHost(catalog.get(name))
        started.append(h)
        h.load()
        return h

    yield make
    for h in started:
        h.stop()


def gone(pid: int, within_s: float = 3.0) -> bool:
    """True once no process has this id (it exited and was reaped)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_results_come_back_from_a_warm_worker(host: Callable[[str], ProcessHost]) -> None:
    # GIVEN a loaded function: INIT happened at load
    svc = host("svc")
    assert svc.init_ms is not None and svc.init_ms > 0
    assert svc.loaded_at is not None and svc.models == {}
    # WHEN it is invoked twice
    first = svc.invoke({"op": "echo"}, request_id="req-1")
    second = svc.invoke({"op": "echo"})
    # THEN the same worker (another process) answers, its module state kept between calls
    assert first["pid"] == second["pid"] != os.getpid()
    # and INIT's objects sit in the collector's permanent generation (no full pass walks them)
    assert first["frozen"] > 10_000
    assert (first["count"], second["count"]) == (1, 2)
    # AND it sees the function's environment (not set in this process), name and deadline
    assert first["greeting"] == "hello from svc" and "GREETING" not in os.environ
    assert first["service"] == "svc"
    assert first["request_id"] == "req-1"
    assert 0 < first["remaining_ms"] <= 1000


def test_a_raise_propagates_and_the_worker_keeps_serving(
    host: Callable[[str], ProcessHost],
) -> None:
    svc = host("svc")
    before = svc.invoke({"op": "echo"})
    # WHEN the handler raises
    with pytest.raises(FunctionError) as err:
        svc.invoke({"op": "raise"})
    # THEN the error carries its type and message
    assert err.value.error_type == "ValueError"
    assert err.value.error_message == "bad input 42"
    assert any("bad input 42" in line for line in err.value.stack_trace)
    # AND the same warm worker serves the next call: its counter continues
    after = svc.invoke({"op": "echo"})
    assert after["pid"] == before["pid"]
    assert after["count"] == before["count"] + 2


def test_a_hang_is_killed_at_the_timeout_and_the_next_call_gets_a_fresh_worker(
    host: Callable[[str], ProcessHost],
) -> None:
    svc = host("svc")  # timeout_s = 1
    before = svc.invoke({"op": "echo"})
    # WHEN an invocation sleeps 30 s
    t0 = time.monotonic()
    with pytest.raises(FunctionTimeoutError) as err:
        svc.invoke({"op": "hang"})
    elapsed = time.monotonic() - t0
    # THEN it fails at about timeout_s, as a timeout the gateway maps to 504
    assert 0.9 <= elapsed < 2.5
    assert isinstance(err.value, TimeoutError) and isinstance(err.value, AibError)
    assert "timed out after 1.00 seconds" in str(err.value)
    # AND the worker was killed
    assert gone(before["pid"])
    # AND the next call works, on a fresh worker (a new INIT: the counter restarted)
    after = svc.invoke({"op": "echo"})
    assert after["pid"] != before["pid"]
    assert after["count"] == 1


def test_a_crash_is_reported_with_its_exit_status_and_the_next_call_works(
    host: Callable[[str], ProcessHost],
) -> None:
    svc = host("svc")
    before = svc.invoke({"op": "echo"})
    # WHEN the worker exits in the middle of an invocation
    with pytest.raises(FunctionCrashError) as err:
        svc.invoke({"op": "exit"})
    # THEN the exit code is reported
    assert err.value.exit_code == 3 and err.value.signal is None
    assert "exit status 3" in str(err.value)
    # AND the next call gets a fresh worker
    after = svc.invoke({"op": "echo"})
    assert (after["count"], after["pid"] != before["pid"]) == (1, True)
    # WHEN the worker is killed by a signal (as the OOM killer does)
    with pytest.raises(FunctionCrashError) as err:
        svc.invoke({"op": "oom"})
    # THEN the signal is reported, and the function serves again
    assert err.value.signal == signal.SIGKILL and err.value.exit_code is None
    assert "SIGKILL" in str(err.value)
    assert svc.invoke({"op": "echo"})["count"] == 1


def test_failures_stay_inside_their_function(host: Callable[[str], ProcessHost]) -> None:
    # GIVEN two functions, one invoked continuously in the background
    svc, other = host("svc"), host("other")
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def steady() -> None:
        while not done.is_set():
            try:
                results.append(other.invoke({"op": "echo"}))
            except BaseException as e:
                errors.append(e)
            time.sleep(0.02)

    t = threading.Thread(target=steady)
    t.start()
    # WHEN the first one raises, hangs and crashes
    try:
        with pytest.raises(FunctionError):
            svc.invoke({"op": "raise"})
        with pytest.raises(FunctionTimeoutError):
            svc.invoke({"op": "hang"})
        with pytest.raises(FunctionCrashError):
            svc.invoke({"op": "exit"})
    finally:
        done.set()
        t.join()
    # THEN the other one answered every call, from the same warm worker
    assert errors == []
    assert len(results) > 10
    assert {r["pid"] for r in results} == {results[0]["pid"]}
    assert results[-1]["count"] == len(results)


def test_the_pool_grows_to_the_limit_and_no_further(host: Callable[[str], ProcessHost]) -> None:
    svc = host("svc")  # no reserved_concurrency: two workers
    out: list[dict[str, Any]] = []
    # WHEN three invocations of 0.2 s arrive together
    threads = [
        threading.Thread(target=lambda: out.append(svc.invoke({"op": "slow"}))) for _ in range(3)
    ]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # THEN they ran on two workers (the third waited for a free one)
    assert len(out) == 3
    assert len({r["pid"] for r in out}) == 2
    assert time.monotonic() - t0 >= 0.4
    assert len(svc.pids) == 2


def test_provisioned_workers_are_initialized_at_load(
    host: Callable[[str], ProcessHost],
) -> None:
    # GIVEN a function that declares provisioned_concurrency = 3, loaded
    warm = host("warm")
    # THEN three workers ran their INIT before any invocation
    ready = set(warm.pids)
    assert len(ready) == 3 and warm.max_workers == 3
    # WHEN three invocations of 0.2 s arrive together
    out: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=lambda: out.append(warm.invoke({"op": "slow"}))) for _ in range(3)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # THEN the provisioned workers served them side by side: no worker started under load
    assert {r["pid"] for r in out} == ready
    assert all(r["count"] == 1 for r in out)
    assert set(warm.pids) == ready


def _worker_children() -> list[int]:
    """Live worker processes started by this process."""
    me, out = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me and fields[0] != "Z" and b"aibackend.local.isolation" in cmdline:
            out.append(int(entry.name))
    return out


def test_a_failed_provisioned_init_leaves_no_worker_behind(
    catalog: Catalog, tmp_path: Path
) -> None:
    # GIVEN two provisioned workers of which only the first to start may finish its INIT
    spec = catalog.get("flaky").model_copy(
        update={"environment": {"FLAKY_INIT_MARK": str(tmp_path / "mark")}}
    )
    before = set(_worker_children())
    h = ProcessHost(spec)
    # WHEN it is loaded: the other one's error comes back
    with pytest.raises(FunctionInitError, match="only one worker may start"):
        h.load()
    # THEN the worker whose INIT succeeded was stopped too: nothing is left running or serving
    assert set(_worker_children()) == before
    assert h.pids == []
    with pytest.raises(RuntimeError, match="not loaded"):
        h.invoke({})


def test_load_swaps_workers_without_failing_invocations(
    host: Callable[[str], ProcessHost],
) -> None:
    svc = host("svc")
    calls: list[tuple[float, dict[str, Any]]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def traffic() -> None:
        while not done.is_set():
            started = time.monotonic()
            try:
                calls.append((started, svc.invoke({"op": "slow"})))
            except BaseException as e:
                errors.append(e)

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    for th in threads:
        th.start()
    try:
        time.sleep(0.8)
        old = set(svc.pids)
        # WHEN the function is reloaded (a model's production version moved) under load
        svc.load()
        swapped = time.monotonic()
        time.sleep(0.8)
    finally:
        done.set()
        for th in threads:
            th.join()
    # THEN no invocation failed
    assert errors == []
    # AND invocations that started after the swap ran on new workers, the old ones are gone
    after = {r["pid"] for started, r in calls if started > swapped}
    assert after and not after & old
    assert all(gone(pid) for pid in old)


def test_stop_terminates_every_worker(host: Callable[[str], ProcessHost]) -> None:
    svc = host("svc")
    svc.invoke({"op": "echo"})
    pids = svc.pids
    svc.stop()
    assert pids and all(gone(pid) for pid in pids)
    with pytest.raises(RuntimeError, match="not loaded"):
        svc.invoke({"op": "echo"})


def test_an_init_failure_is_raised_by_load(catalog: Catalog) -> None:
    broken = ProcessHost(catalog.get("broken"))
    with pytest.raises(FunctionInitError) as err:
        broken.load()
    assert err.value.error_type == "RuntimeError"
    assert "no model artifact" in err.value.error_message
    with pytest.raises(RuntimeError, match="not loaded"):
        broken.invoke({})


def test_gateway_maps_crashes_to_502_and_hangs_to_504(
    catalog: Catalog, host: Callable[[str], ProcessHost], tmp_path: Path
) -> None:
    # GIVEN the local gateway in front of isolated functions
    hosts = {"svc": host("svc"), "other": host("other")}
    access = LocalAccess(PlatformSettings(state_dir=tmp_path / "gw"), catalog.plans)
    with gateway_client(catalog, hosts, access) as client:
        # WHEN one route crashes its worker
        crashed = client.get("/v1/svc/exit")
        # THEN it answers 502
        assert crashed.status_code == 502
        assert crashed.headers["content-type"] == "application/problem+json"
        assert "exit status 3" in crashed.json()["detail"]
        # WHEN a route hangs (on a fresh worker, warmed outside the gateway: today the gateway's
        # own timeout also counts the worker's INIT, which Lambda does not)
        assert hosts["svc"].invoke({"op": "echo"})["count"] == 1
        hung = client.get("/v1/svc/hang")
        # THEN it answers 504, while another function's route answers 200
        assert hung.status_code == 504
        healthy = client.get("/v1/other/echo")
        assert healthy.status_code == 200 and healthy.json()["count"] == 1
