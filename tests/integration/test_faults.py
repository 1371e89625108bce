"""Faults a user will meet: the runtime SIGKILLed under load, a function that hangs, a full disk
under the state folder, and a model artifact corrupted in the store.

Each test injects one fault and checks what a user would notice: nothing accepted is lost,
nothing half-written is visible, and whatever served before the fault keeps serving.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from aibackend.adapters import publish_only
from aibackend.adapters.local import LocalObjectStore, SqliteModelRegistry
from aibackend.adapters.local_bus import LocalEventBus
from aibackend.adapters.local_queue import SqliteQueueService
from aibackend.catalog import load_catalog
from aibackend.errors import ModelLoadError, ModelNotFoundError, ObjectNotFoundError
from aibackend.fraud.generator import generate_transactions, to_records
from aibackend.local.runtime import LocalRuntime
from aibackend.models import runtime as model_runtime
from aibackend.models.card import check_artifact
from aibackend.ports import PutEvent, QueueConfig
from aibackend.settings import PlatformSettings
from tests.support import FUNCTIONS, running_runtime, runtime_client, write_functions

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = ROOT / "events" / "payloads"
AIB = [sys.executable, "-m", "aibackend.cli"]
#: The queue a rule fills with Transaction Created events for fraud_events.
FRAUD_QUEUE = "fraud-events-transactions"


def _temp_files(root: Path) -> list[Path]:
    """Leftovers of interrupted writes: `atomic_write` temp files and download parts."""
    return [p for p in root.rglob(".*") if p.is_file() and p.suffix in (".tmp", ".part")]


# -- 1. SIGKILL of `aib dev` under load ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(
    method: str, url: str, body: bytes | None = None, key: str | None = None
) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("content-type", "application/json")
    if key is not None:
        req.add_header("x-api-key", key)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class DevServer:
    """`aib dev` as a real process on one port and state folder, restartable after a kill."""

    def __init__(self, state: Path, log: Path, functions: Path | None = None) -> None:
        self.state = state
        self.log = log
        self.functions = functions
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIB_")}
        cmd = [*AIB, "--state-dir", str(self.state)]
        if self.functions is not None:
            cmd += ["--functions", str(self.functions)]
        cmd += ["dev", "--no-train", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=out)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"aib dev exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if _http("GET", self.base + "/health")[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"aib dev did not answer in {timeout_s} s:\n{self.tail()}")
            time.sleep(0.1)

    @property
    def key(self) -> str:
        """The development key `aib dev` made in its state folder."""
        return (self.state / "auth" / "dev-key").read_text().strip()

    def kill(self) -> None:
        """SIGKILL, then reap: a zombie would still look alive to the next run's orphan check."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        """The runtime's own log lines (handlers' JSON logs, metrics and access log left out)."""
        text = self.log.read_text(errors="replace").splitlines()
        own = [x for x in text if not x.startswith("{") and "HTTP/1.1" not in x]
        return "\n".join(own[-lines:])


#: fraud_events with a 2 s timeout: a batch in flight when the runtime dies returns to its
#: queue after the visibility timeout (six times the timeout: 12 s instead of a minute).
QUICK_VISIBILITY = ("timeout_s = 10", "timeout_s = 2")


@pytest.fixture
def dev_server(fraud_state: Path, tmp_path: Path) -> Iterator[DevServer]:
    """`aib dev` on a copy of the state and of the project's functions, fraud_events with
    QUICK_VISIBILITY."""
    state = tmp_path / "state"
    shutil.copytree(fraud_state, state)
    functions = tmp_path / "functions"
    shutil.copytree(FUNCTIONS, functions, ignore=shutil.ignore_patterns("__pycache__"))
    toml = functions / "fraud_events" / "function.toml"
    old, new = QUICK_VISIBILITY
    assert old in toml.read_text()
    toml.write_text(toml.read_text().replace(old, new))
    server = DevServer(state, tmp_path / "aib-dev.log", functions)
    yield server
    server.stop()


@pytest.fixture
def publisher(dev_server: DevServer) -> Iterator[LocalEventBus]:
    """The runtime's bus file opened to publish only, as `aib put-events` opens it."""
    state = dev_server.state
    with (
        SqliteQueueService(state / "queues.db") as queues,
        LocalEventBus(state / "events.db", deliver=publish_only, queues=queues) as bus,
    ):
        yield bus


def _scored(bus: LocalEventBus) -> dict[str, list[dict[str, Any]]]:
    """Transaction Scored events by the Transaction Created event that caused them."""
    out: dict[str, list[dict[str, Any]]] = {}
    for e in bus.archived(limit=1_000_000, detail_type="Transaction Scored"):
        out.setdefault(e["detail"]["caused_by"], []).append(e)
    return out


def _in_flight(state: Path, within_s: float) -> int:
    """Messages of fraud_events' queue received and not yet done (batches under way); polls up
    to `within_s` for one."""
    deadline = time.monotonic() + within_s
    with SqliteQueueService(state / "queues.db") as queues:
        queue = queues.get(FRAUD_QUEUE)
        while True:
            n = queue.stats().in_flight
            if n or time.monotonic() > deadline:
                return n
            time.sleep(0.005)


def test_sigkill_under_load_loses_no_accepted_event_and_restarts_on_the_same_model(
    dev_server: DevServer, publisher: LocalEventBus
) -> None:
    payload = (PAYLOADS / "transaction.json").read_bytes()
    records = to_records(generate_transactions(4000, seed=11))
    # GIVEN aib dev serving the fraud model over HTTP and scoring events from the bus
    dev_server.start()
    assert _http("GET", dev_server.base + "/health")[1]["models"]["fraud"] == 1
    status, before = _http("POST", dev_server.base + "/v1/fraud/score", payload, dev_server.key)
    assert status == 200, before
    bus = publisher
    accepted: list[str] = []
    refused: list[tuple[int, str, str]] = []
    served_before_kill = 0
    killed, done = threading.Event(), threading.Event()
    cursor, cursor_lock = iter(range(len(records))), threading.Lock()

    def publish() -> None:
        while not done.is_set():
            with cursor_lock:
                batch = [records[i] for i in islice(cursor, 5)]
            if not batch:
                return
            result = bus.put_events(
                [
                    PutEvent(source="aib.payments", detail_type="Transaction Created", detail=r)
                    for r in batch
                ]
            )
            refused.extend(result.failures)
            accepted.extend(i for i in result.event_ids if i is not None)
            time.sleep(0.01)

    score_url, key = dev_server.base + "/v1/fraud/score", dev_server.key

    def score() -> None:
        nonlocal served_before_kill
        while not done.is_set():
            try:
                code, _ = _http("POST", score_url, payload, key)
            except (OSError, http.client.HTTPException, json.JSONDecodeError):
                time.sleep(0.05)  # killed mid-answer, or down: a client retries
                continue
            if code == 200 and not killed.is_set():
                served_before_kill += 1

    errors: list[BaseException] = []

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as e:
                errors.append(e)

        return run

    threads = [threading.Thread(target=guarded(f)) for f in (publish, publish, score, score)]
    for t in threads:
        t.start()
    try:
        # WHEN it is SIGKILLed with a backlog of accepted events not yet scored, at the worst
        # moment: a fraud_events invocation has received a batch and not finished it
        deadline = time.monotonic() + 20
        while not (len(accepted) > len(scored := _scored(bus)) and len(scored) >= 50):
            assert time.monotonic() < deadline, f"no load built up:\n{dev_server.tail()}"
            time.sleep(0.1)
        _in_flight(dev_server.state, within_s=5)
        dev_server.kill()
        killed.set()
        time.sleep(0.5)  # the bus keeps accepting events while the runtime is down
    finally:
        done.set()
        for t in threads:
            t.join()
    assert errors == [] and refused == []
    assert served_before_kill > 0
    scored_at_kill = len(_scored(bus))
    in_flight_at_kill = _in_flight(dev_server.state, within_s=0)
    # AND it is restarted on the same state folder
    dev_server.start()
    # THEN it is healthy, on the same model version, and scores as before
    status, health = _http("GET", dev_server.base + "/health")
    assert (status, health["status"], health["models"]["fraud"]) == (200, "ok", 1)
    status, after = _http("POST", dev_server.base + "/v1/fraud/score", payload, dev_server.key)
    assert status == 200, after
    assert after["model"] == before["model"] == {"name": "fraud", "version": 1}
    assert after["results"][0]["score"] == before["results"][0]["score"]
    # AND every event accepted before (or during) the kill is scored, at least once (a
    # redelivery may score one twice: consumers dedupe on caused_by), and no delivery failed;
    # a batch the kill interrupted comes back after its visibility timeout
    deadline = time.monotonic() + 60
    while (missing := set(accepted) - set(scored := _scored(bus))) and time.monotonic() < deadline:
        time.sleep(0.5)
    stats = bus.stats()
    failures = [
        (f["event_id"], f["condition"], f["record"].get("responsePayload", {}).get("errorType"))
        for f in bus.failures()
    ]
    assert not missing and not failures, (
        f"{len(missing)} of {len(accepted)} accepted events never scored, failed deliveries "
        f"{failures} ({scored_at_kill} scored and {in_flight_at_kill} message(s) in flight "
        f"at the kill); bus {stats}\n{dev_server.tail()}"
    )
    assert {e["detail"]["model"]["version"] for es in scored.values() for e in es} == {1}


# -- 2. A function that hangs --------------------------------------------------------------------

HANDLER = """
import json, os, time

def handler(event, context):
    if event["path"].endswith("/hang"):
        time.sleep(30)
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"pid": os.getpid()})}
"""
ROUTE = """
timeout_s = {timeout}
[[routes]]
method = "GET"
path = "/v1/{name}/{{op}}"
access = "api_key"
"""


def test_a_hung_function_answers_504_at_its_timeout_while_another_keeps_serving(
    tmp_path: Path,
) -> None:
    # GIVEN two functions in their own worker processes: `sleepy` (timeout_s = 1) and `steady`
    functions = write_functions(
        tmp_path / "functions",
        {
            "sleepy": (ROUTE.format(name="sleepy", timeout=1), HANDLER),
            "steady": (ROUTE.format(name="steady", timeout=5), HANDLER),
        },
    )
    with running_runtime(functions, tmp_path / "state", isolate=True, sources=False) as rt:
        client = runtime_client(rt)
        first = client.get("/v1/sleepy/ping")
        assert first.status_code == 200
        assert client.get("/v1/steady/ping").status_code == 200
        # WHEN a request to `sleepy` hangs, while `steady` is called the whole time
        hung: dict[str, Any] = {}

        def hang() -> None:
            t0 = time.monotonic()
            r = client.get("/v1/sleepy/hang")
            hung.update(response=r, elapsed=time.monotonic() - t0)

        caller = threading.Thread(target=hang)
        caller.start()
        steady: list[tuple[int, float]] = []
        while caller.is_alive():
            t0 = time.monotonic()
            r = client.get("/v1/steady/ping")
            steady.append((r.status_code, time.monotonic() - t0))
            time.sleep(0.02)
        caller.join()
        # THEN the hang answers a 504 problem at about its timeout
        r = hung["response"]
        assert r.status_code == 504
        assert r.headers["content-type"] == "application/problem+json"
        assert "timeout_s = 1" in r.json()["detail"]
        assert 0.9 <= hung["elapsed"] < 2.5
        # AND the other function answered every call meanwhile, none held up by the hang
        assert len(steady) >= 5
        assert {code for code, _ in steady} == {200}
        assert max(t for _, t in steady) < 0.5
        # AND the hung function serves again, from a fresh worker (the hung one was killed)
        again = client.get("/v1/sleepy/ping")
        assert again.status_code == 200
        assert again.json()["pid"] != first.json()["pid"]


# -- 3. A full disk under the state folder -------------------------------------------------------


class _FillingFile:
    """A file being written on a disk that fills: `write` writes what still fits, then fails
    with ENOSPC, as write(2) does (a short write, then `No space left on device`)."""

    def __init__(self, f: Any, disk: FullDisk) -> None:
        self._f = f
        self._disk = disk

    def write(self, data: bytes) -> int:
        fits = self._disk.take(len(data))
        self._f.write(data[:fits])
        if fits < len(data):
            self._f.flush()  # the bytes that fit are on disk, in the temp file
            _no_space()
        return fits

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        self._f.close()


class FullDisk:
    """The state folder's disk with `free` bytes left, injected where the local adapters write
    files (`atomic_write`'s `os.fdopen`); `free = None` gives the space back."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, free: int | None = 0) -> None:
        self.free = free
        real = os.fdopen

        def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            f = real(fd, mode, *args, **kwargs)
            return _FillingFile(f, self) if "w" in mode else f

        monkeypatch.setattr(os, "fdopen", fdopen)

    def take(self, n: int) -> int:
        if self.free is None:
            return n
        fits = min(n, self.free)
        self.free -= fits
        return fits


def _no_space(*_: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_a_put_on_a_full_disk_fails_and_leaves_the_previous_object_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # GIVEN an object with its content type and metadata
    store = LocalObjectStore(tmp_path / "bucket", bucket="reports")
    old = store.put(
        "daily/report.csv", b"a,b\n1,2\n", content_type="text/csv", metadata={"run": "1"}
    )
    new = b"a,b\n" + b"3,4\n" * 16_384
    # WHEN it is overwritten on a disk with a few hundred bytes left: the error comes from
    # write(2), or only from fsync (delayed allocation, network filesystems)
    if where == "write":
        FullDisk(monkeypatch, free=300)
    else:
        monkeypatch.setattr(os, "fsync", _no_space)
    with pytest.raises(OSError) as err:
        store.put("daily/report.csv", new, content_type="text/plain", metadata={"run": "2"})
    # THEN the put fails with the disk's error
    assert err.value.errno == errno.ENOSPC
    # AND nothing half-written is left or visible: no temp file, no other key
    assert _temp_files(tmp_path / "bucket") == []
    assert [o.key for o in store.list()] == ["daily/report.csv"]
    # AND the previous object is whole: its bytes and what head says about them
    assert store.get("daily/report.csv") == b"a,b\n1,2\n"
    now = store.head("daily/report.csv")
    assert (now.size, now.etag, now.content_type, now.metadata) == (
        old.size,
        old.etag,
        "text/csv",
        {"run": "1"},
    )
    # AND a new key put on the full disk does not exist afterwards
    with pytest.raises(OSError):
        store.put("daily/other.csv", new)
    with pytest.raises(ObjectNotFoundError):
        store.head("daily/other.csv")
    # WHEN space is back, the same put succeeds
    monkeypatch.undo()
    info = store.put("daily/report.csv", new, content_type="text/plain", metadata={"run": "2"})
    assert store.get("daily/report.csv") == new
    assert (info.content_type, info.metadata) == ("text/plain", {"run": "2"})


def _page_limit(conn: sqlite3.Connection, pages: int | None) -> None:
    """SQLite's own full disk: with `max_page_count` at the file's current size, a write that
    needs a new page fails with SQLITE_FULL ("database or disk is full"), as on a full disk.
    It is an honest stand-in at the SQLite level (same error, same rollback path); unlike a
    real ENOSPC it strikes while the statement runs rather than when the WAL is written."""
    if pages is None:
        conn.execute("PRAGMA max_page_count = 1073741823")
        return
    conn.execute(f"PRAGMA max_page_count = {pages}")


@pytest.mark.parametrize("fails", ["artifact upload", "registry record"])
def test_a_registration_on_a_full_disk_leaves_no_half_registered_version(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_factory: Callable[..., Path],
    fails: str,
) -> None:
    # GIVEN a registry whose production version is v1
    state = tmp_path / "state"
    registry = SqliteModelRegistry(
        state / "registry.db", LocalObjectStore(state / "buckets" / "models", bucket="models")
    )
    v1 = registry.register(tiny_model_factory(tmp_path / "v1"))
    registry.set_production("tiny", v1.version)
    # A card of 300 features: its record needs pages of its own, as a real model's does.
    source = tiny_model_factory(tmp_path / "v2", weights=tuple(range(300)))
    # WHEN v2 is registered and the disk fills: halfway through its files, or at its record
    if fails == "artifact upload":
        disk = FullDisk(monkeypatch, free=(source / "model.onnx").stat().st_size + 400)
        with pytest.raises(OSError) as err:
            registry.register(source)
        assert err.value.errno == errno.ENOSPC
        disk.free = None
    else:
        conn = registry._conn
        _page_limit(conn, conn.execute("PRAGMA page_count").fetchone()[0])
        with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
            registry.register(source)
        _page_limit(conn, None)
    # THEN the registry knows v1 only, still in production, and refuses v2
    assert [v.version for v in registry.list_versions("tiny")] == [1]
    prod = registry.production("tiny")
    assert prod is not None
    assert (prod.version, prod.sha256, prod.stage) == (1, v1.sha256, "production")
    with pytest.raises(ModelNotFoundError):
        registry.get("tiny", 2)
    assert _temp_files(state) == []
    # AND once space is back, registering again gives a whole v2
    v2 = registry.register(source)
    assert v2.version == 2
    folder = registry.download("tiny", 2, tmp_path / "download")
    assert check_artifact(folder).sha256 == v2.sha256
    assert (folder / "model.onnx").read_bytes() == (source / "model.onnx").read_bytes()


def test_a_queue_send_on_a_full_disk_fails_and_keeps_the_queued_messages(tmp_path: Path) -> None:
    # GIVEN a queue holding 20 messages
    with SqliteQueueService(tmp_path / "queues.db") as queues:
        queue = queues.ensure(QueueConfig(name="orders"))
        kept = [json.dumps({"n": n, "pad": "x" * 2000}) for n in range(20)]
        for i in range(0, 20, 10):
            queue.send_batch(kept[i : i + 10])
        # WHEN the disk fills up while more batches are sent
        conn = queues._conn
        _page_limit(conn, conn.execute("PRAGMA page_count").fetchone()[0])
        with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
            for n in range(20, 2000, 10):
                batch = [json.dumps({"n": m, "pad": "x" * 2000}) for m in range(n, n + 10)]
                queue.send_batch(batch)
                kept.extend(batch)  # a batch is all or nothing: only whole batches count
        # THEN once space is back, the queue holds exactly the messages sent before, intact
        _page_limit(conn, None)
        assert queue.stats().visible == len(kept)
        got: list[str] = []
        while received := queue.receive(10):
            got.extend(m.body for m in received)
            queue.delete_batch([m.receipt_handle for m in received])
        assert sorted(got) == sorted(kept)
        # AND it takes new messages again
        queue.send("after")
        assert [m.body for m in queue.receive(10)] == ["after"]


# -- 4. A corrupted model artifact ---------------------------------------------------------------


@pytest.fixture
def fraud_runtime(
    fraud_state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalRuntime]:
    # Loaded models are cached per (name, version) in this process: another test's state folder
    # may have left a healthy "fraud v2" there, which would hide this test's corrupted one.
    monkeypatch.setattr(model_runtime, "_cache", {})
    with running_runtime(
        FUNCTIONS, tmp_path / "state", seed_state=fraud_state, sources=False
    ) as rt:
        yield rt


def test_a_corrupted_version_is_refused_by_checksum_and_the_previous_one_keeps_serving(
    fraud_runtime: LocalRuntime, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN the runtime serving fraud v1
    rt = fraud_runtime
    client = runtime_client(rt)
    payload = json.loads((PAYLOADS / "transactions_batch.json").read_text())
    before = client.post("/v1/fraud/score", json=payload).json()
    assert before["model"] == {"name": "fraud", "version": 1}
    # AND a second version registered (a copy of the first) whose model.onnx is then
    # corrupted in the store (a bad disk, a bad copy, a hand edit), and promoted
    copy = rt.registry.download("fraud", 1, tmp_path / "copy")
    v2 = rt.registry.register(copy)
    onnx = rt.settings.state_dir / "buckets" / "models" / "fraud" / str(v2.version) / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    rt.registry.set_production("fraud", v2.version)
    # WHEN the runtime notices the pointer moved
    with caplog.at_level("ERROR", logger="aib.runtime"):
        reloaded = rt.poll_once()
    # THEN it refused the new version by checksum, saying so in its log
    assert "does not match model.json" in caplog.text
    # AND every function keeps serving v1: the same scores, the same model version
    r = client.post("/v1/fraud/score", json=payload)
    assert r.status_code == 200, r.text
    now = r.json()
    assert now["model"] == {"name": "fraud", "version": 1}
    assert [x["score"] for x in now["results"]] == [x["score"] for x in before["results"]]
    assert client.get("/v1/fraud/model").json()["version"] == 1
    assert client.get("/health").json()["models"]["fraud"] == 1
    # (every function serving fraud, each still on v1)
    assert {name: h.models["fraud"] for name, h in rt.hosts.items() if "fraud" in h.models} == {
        f.name: 1 for f in rt.catalog.functions if "fraud" in f.models
    }
    # AND it reports no function as reloaded, now or at the next check
    assert reloaded == []
    assert rt.poll_once() == []
    # AND a fresh start on that state fails, naming the mismatch and what to do
    fresh = LocalRuntime(load_catalog(FUNCTIONS), PlatformSettings(state_dir=rt.settings.state_dir))
    with pytest.raises(ModelLoadError) as err:
        fresh.start(sources=False)
    message = str(err.value)
    assert f"fraud/{v2.version}/model.onnx" in message
    assert "sha256" in message and "does not match model.json" in message
    assert "retrain" in message
