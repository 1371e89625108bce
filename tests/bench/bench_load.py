"""Load test: `aib dev` vs a bare FastAPI + onnxruntime app serving the same model, under wrk.

The bare app is one uvicorn process (`uvicorn.run(app, host, port, log_level="info")`, as
`aib dev` calls it) and runs for the whole test. `aib dev` is measured in two phases, one after
the other on the same state folder: as it starts by default (every function in its one
process), then with `--isolate` (the gateway in one process, each function in worker
processes of its own: the topology of API Gateway in front of Lambda). In each phase wrk drives
both servers with identical settings (POST `events/payloads/transaction.json`) in alternating
rounds (bare, aib, aib, bare, ...), so both see the same machine noise, and the phase's ratio
is against the bare rounds of that phase. Latency percentiles come from wrk's own histograms,
merged across rounds. CPU is counted for each server's whole process tree (`--isolate`'s
workers included), so `server_cpu_ms_per_request` compares the work done, whatever the number
of cores it was spread over. Writes `bench/results/load.json`.

    .venv/bin/python tests/bench/bench_load.py [--state-dir .aib] [--duration 60] [--quick]
        [--modes in-process,isolate]

Needs `wrk` on PATH; as root on Debian/Ubuntu the script installs it with apt-get.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import RESULTS, ROOT

PAYLOAD = ROOT / "events" / "payloads" / "transaction.json"
#: The current (non-deprecated) version of the API; the baseline serves the same path.
ROUTE = "/v2/fraud/score"
TARGET_RATIO_MIN = 0.6
AIB, AIB_ISOLATE, BARE = "aib_dev", "aib_dev_isolate", "bare_fastapi_onnxruntime"
#: `--modes` values -> the name a phase's `aib dev` goes by in the results.
MODES = {"in-process": AIB, "isolate": AIB_ISOLATE}

BARE_APP = '''"""Bare FastAPI + onnxruntime baseline, written and run by bench_load.py."""

import os

import onnxruntime as ort
import uvicorn
from fastapi import FastAPI

from aibackend.fraud.features import transactions_matrix
from aibackend.fraud.schema import Transaction

so = ort.SessionOptions()
so.intra_op_num_threads = 1
so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
SESSION = ort.InferenceSession(
    os.environ["BARE_MODEL_PATH"], sess_options=so, providers=["CPUExecutionProvider"]
)
INPUT = SESSION.get_inputs()[0].name
THRESHOLD = float(os.environ["FRAUD_THRESHOLD"])
app = FastAPI()


@app.post("ROUTE")
async def score(txn: Transaction) -> dict[str, object]:
    p = float(SESSION.run(None, {INPUT: transactions_matrix([txn])})[-1][0, 1])
    decision = "decline" if p >= THRESHOLD else "approve"
    return {"transaction_id": txn.transaction_id, "score": p, "decision": decision}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["BARE_PORT"]), log_level="info")
'''.replace("ROUTE", ROUTE)

# Counts non-2xx answers per thread (wrk itself only counts status >= 400) and dumps the
# latency histogram (microseconds, count) so rounds can be merged into exact percentiles.
WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = "API_KEY"
wrk.headers["Authorization"] = "Bearer TOKEN"
wrk.body = [==[BODY]==]

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do
    n = n + t:get("non2xx")
  end
  local hist = {}
  for i = 1, #latency do
    local v, c = latency(i)
    hist[#hist + 1] = string.format("[%d,%d]", v, c)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us":%d,"requests":%d,"non_2xx":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"timeout":%d,"latency_us":[%s]}\\n',
    summary.duration, summary.requests, n, e.connect, e.read, e.write, e.timeout,
    table.concat(hist, ",")))
end
"""


@dataclass
class Server:
    name: str
    base: str
    pid: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read())


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (Linux; None elsewhere or gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux; 0 elsewhere)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """`pid` and its live descendants (`aib dev --isolate`'s worker processes)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def _tree_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds so far of each process of `pid`'s tree (a worker retired during a round
    takes its seconds with it: the count can only err low)."""
    return {p: _cpu_s(p) for p in _tree(pid)}


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(v - before.get(p, 0.0) for p, v in after.items())


def ensure_wrk() -> str:
    """Path of wrk; installed with apt-get when missing and this is root on Debian/Ubuntu."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: installing it with apt-get ...", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit(
        "bench_load needs the wrk load generator on PATH: `sudo apt-get install wrk` "
        "(Debian/Ubuntu), `brew install wrk` (macOS), or build it from github.com/wg/wrk"
    )


@contextmanager
def serve(
    name: str, cmd: list[str], env: dict[str, str], port: int, log: Path, timeout_s: float
) -> Iterator[Server]:
    """Start a server process, wait for it to answer on `port`; SIGINT (then kill) on exit."""
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
                )
            try:
                # /health on aib dev; any HTTP answer (404 included) on the bare app.
                urllib.request.urlopen(base + "/health", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{name} did not answer in {timeout_s} s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.2)
        yield Server(name, base, proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_wrk(
    wrk: str, lua: Path, url: str, threads: int, connections: int, seconds: int
) -> dict[str, Any]:
    out = subprocess.run(
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",  # the function's timeout_s: slower answers count as errors, not latency
            "-s",
            str(lua),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in out.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            return json.loads(line.removeprefix("WRK_JSON "))  # type: ignore[no-any-return]
    raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")


@dataclass(frozen=True)
class Runner:
    """wrk with this test's settings: `run(url, seconds)` -> one round's summary."""

    wrk: str
    lua: Path
    threads: int
    connections: int

    def __call__(self, url: str, seconds: int) -> dict[str, Any]:
        return run_wrk(self.wrk, self.lua, url, self.threads, self.connections, seconds)


def _credentials(state: Path, settings: Any, lua: Path, body: str) -> dict[str, str]:
    """The development key of `state` and a `predict:fraud` token; writes wrk's script."""
    from aibackend.auth.factory import dev_signing_key

    key = (state / "auth" / "dev-key").read_text().strip()
    token = dev_signing_key(settings).issue("bench", ["predict:fraud"], ttl_s=6 * 3600)
    lua.write_text(WRK_LUA.replace("BODY", body).replace("API_KEY", key).replace("TOKEN", token))
    return {"x-api-key": key, "Authorization": f"Bearer {token}"}


def _check_same_answers(
    aib: Server, bare: Server, body: bytes, auth: dict[str, str], version: int
) -> None:
    """Both servers serve the production version and score the sample alike, or no test."""
    health = json.loads(urllib.request.urlopen(aib.base + "/health").read())
    if health["models"].get("fraud") != version:
        raise RuntimeError(f"{aib.name} serves {health['models']}, the baseline v{version}")
    answers = {}
    for srv in (aib, bare):
        status, answer = _post(srv.base + ROUTE, body, auth)
        if status != 200:
            raise RuntimeError(f"{srv.name} answered {status}: {answer}")
        answers[srv.name] = answer
    aib_score = answers[aib.name]["results"][0]["risk"]["score"]
    if abs(aib_score - answers[bare.name]["score"]) > 1e-9:
        raise RuntimeError(f"scores differ: aib {aib_score}, bare {answers[bare.name]['score']}")


def alternate(
    run: Runner, bare: Server, aib: Server, rounds_n: int, per_round: int, label: str
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, float]]]:
    """`rounds_n` rounds of each server (bare, aib, aib, bare, ...): wrk's summaries and each
    server's process-tree CPU seconds, in its own rounds and in the other's, by server name."""
    servers = {s.name: s for s in (bare, aib)}
    rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in servers}
    cpu = {n: {"own_rounds": 0.0, "other_rounds": 0.0} for n in servers}
    for i in range(rounds_n):
        for who in (bare, aib) if i % 2 == 0 else (aib, bare):
            print(
                f"{label}, round {i + 1}/{rounds_n}: {who.name} for {per_round} s ...", flush=True
            )
            before = {n: _tree_cpu_s(s.pid) for n, s in servers.items()}
            rounds[who.name].append(run(who.base + ROUTE, per_round))
            for n, s in servers.items():
                spent = _spent(before[n], _tree_cpu_s(s.pid))
                cpu[n]["own_rounds" if n == who.name else "other_rounds"] += spent
    return rounds, cpu


def _percentile(hist: dict[int, int], q: float) -> float:
    """Nearest rank: the smallest latency with at least ceil(q * n) samples at or below it."""
    rank = max(1, math.ceil(q * sum(hist.values())))
    seen = 0
    for value, count in sorted(hist.items()):
        seen += count
        if seen >= rank:
            return value / 1000
    return 0.0


def summarize(rounds: list[dict[str, Any]], cpu: dict[str, float]) -> dict[str, Any]:
    hist: dict[int, int] = {}
    for r in rounds:
        for value, count in r["latency_us"]:
            hist[value] = hist.get(value, 0) + count
    seconds = sum(r["duration_us"] for r in rounds) / 1e6
    requests = sum(r["requests"] for r in rounds)
    socket_errors = {k: sum(r[k] for r in rounds) for k in ("connect", "read", "write", "timeout")}
    non_2xx = sum(r["non_2xx"] for r in rounds)
    return {
        "rps": round(requests / seconds, 1),
        "requests": requests,
        "seconds": round(seconds, 2),
        "p50_ms": round(_percentile(hist, 0.50), 3),
        "p99_ms": round(_percentile(hist, 0.99), 3),
        "max_ms": round(max(hist, default=0) / 1000, 3),
        "non_2xx": non_2xx,
        "socket_errors": socket_errors,
        "errors": non_2xx + sum(socket_errors.values()),
        "rounds_rps": [round(r["requests"] / (r["duration_us"] / 1e6), 1) for r in rounds],
        "server_cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "server_cpu_ms_per_request": round(cpu["own_rounds"] * 1000 / max(1, requests), 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--state-dir", type=Path, default=ROOT / ".aib")
    ap.add_argument(
        "--duration", type=int, default=60, help="seconds of load per server (default 60)"
    )
    ap.add_argument("--rounds", type=int, default=4, help="alternating rounds per server")
    # 2 cores here: the bare app is one uvicorn process (~1 core, GIL-bound), `aib dev` one
    # process or (--isolate) several, plus wrk. Two wrk threads keep the generator from
    # becoming the bottleneck without crowding the servers.
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--connections", type=int, default=16, help="wrk open connections")
    ap.add_argument("--quick", action="store_true", help="6 s per server in 2 rounds (smoke run)")
    ap.add_argument(
        "--modes",
        default="in-process,isolate",
        help="phases, comma-separated: in-process (`aib dev`), isolate (`aib dev --isolate`)",
    )
    args = ap.parse_args()
    if args.quick:
        args.duration, args.rounds = 6, 2
    per_round = max(1, args.duration // args.rounds)
    warmup_s = 1 if args.quick else 3

    # A killed bench (CI timeout) still stops both servers: SIGTERM unwinds the `finally`s.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    wrk = ensure_wrk()
    wrk_version = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout
    state = args.state_dir.resolve()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("AIB_")}
    os.environ["AIB_STATE_DIR"] = str(state)
    os.environ["AIB_ADAPTERS"] = "local"
    from aibackend.adapters import model_registry
    from aibackend.catalog import load_function
    from aibackend.models.card import MODEL_FILE
    from aibackend.models.runtime import artifact_dir
    from aibackend.settings import PlatformSettings

    settings = PlatformSettings.from_env()
    prod = model_registry(settings).production("fraud")
    if prod is None:
        from aibackend.training.local import train_local

        prod = train_local("fraud", settings)
    model_path = artifact_dir("fraud", prod.version, settings) / MODEL_FILE
    fraud_env = load_function(ROOT / "functions" / "fraud_score").environment
    body = PAYLOAD.read_bytes()
    compact = json.dumps(json.loads(body), separators=(",", ":"))
    aib_cmd = [sys.executable, "-m", "aibackend.cli", "--state-dir", str(state), "dev"]

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown or not modes:
        sys.exit(f"--modes: choose from {', '.join(MODES)} (got {args.modes!r})")

    with tempfile.TemporaryDirectory(prefix="aib-bench-load-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        (work / "bare_app.py").write_text(BARE_APP)
        lua = work / "load.lua"
        bare_port = _free_port()
        bare_env = {
            **child_env,
            "BARE_MODEL_PATH": str(model_path),
            "BARE_PORT": str(bare_port),
            "FRAUD_THRESHOLD": fraud_env["FRAUD_THRESHOLD"],
        }
        print("starting the bare baseline ...", flush=True)
        bare = stack.enter_context(
            serve(
                BARE,
                [sys.executable, str(work / "bare_app.py")],
                bare_env,
                bare_port,
                work / "bare.log",
                60,
            )
        )
        run = Runner(wrk, lua, args.threads, args.connections)
        bare_rounds: list[dict[str, Any]] = []
        bare_cpu = {"own_rounds": 0.0, "other_rounds": 0.0}
        phases: dict[str, dict[str, Any]] = {}
        for mode in modes:
            name = MODES[mode]
            print(f"starting {name} (state {state}) ...", flush=True)
            aib_port = _free_port()
            flags = ["--isolate"] if mode == "isolate" else []
            with serve(
                name,
                [*aib_cmd, "--port", str(aib_port), *flags],
                child_env,
                aib_port,
                work / f"{name}.log",
                600,  # trains the demo model first if the state has none
            ) as aib:
                # The development key `aib dev` made, and a token for the route's scope: the
                # load test pays for access checks and usage plans like any client (the bare
                # app ignores them).
                auth = _credentials(state, settings, lua, compact)
                _check_same_answers(aib, bare, body, auth, prod.version)
                for srv in (bare, aib):  # first requests pay for lazy imports and caches
                    run(srv.base + ROUTE, warmup_s)
                rounds, cpu = alternate(run, bare, aib, args.rounds, per_round, mode)
                bare_rounds += rounds[BARE]
                for k, v in cpu[BARE].items():
                    bare_cpu[k] += v
                mine, theirs = (
                    summarize(rounds[name], cpu[name]),
                    summarize(rounds[BARE], cpu[BARE]),
                )
                ratio = round(mine["rps"] / theirs["rps"], 3)
                zero_errors = mine["errors"] == 0 and theirs["errors"] == 0
                phases[mode] = {
                    "command": f"aib dev {' '.join(flags)}".strip(),
                    name: mine,
                    f"{BARE}_same_phase": theirs,
                    "ratio": ratio,
                    "zero_errors": zero_errors,
                    "targets_met": {
                        "throughput": ratio >= TARGET_RATIO_MIN,
                        "zero_errors": zero_errors,
                    },
                }

    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.machine(),
            "cores": os.cpu_count(),
        },
        "model": {"name": "fraud", "version": prod.version},
        "generator": {
            "tool": wrk_version.split("Copyright")[0].strip(),
            "threads": args.threads,
            "connections": args.connections,
            "seconds_per_server_per_phase": per_round * args.rounds,
            "rounds_per_phase": args.rounds,
            "order": "per phase, alternating: bare, aib, aib, bare, ...",
            "request": f"POST {ROUTE} {PAYLOAD.relative_to(ROOT)} ({len(compact)} bytes)",
            "timeout_s": 10,
        },
        BARE: summarize(bare_rounds, bare_cpu),
        "phases": phases,
        "target_ratio_min": TARGET_RATIO_MIN,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "load.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    for mode, phase in phases.items():
        name = MODES[mode]
        for who, s in ((f"{BARE} (same phase)", phase[f"{BARE}_same_phase"]), (name, phase[name])):
            print(
                f"{who:40} {s['rps']:9.1f} rps  p50 {s['p50_ms']:7.2f} ms  "
                f"p99 {s['p99_ms']:7.2f} ms  errors {s['errors']}  "
                f"cpu {s['server_cpu_ms_per_request']:.2f} ms/request"
            )
        print(
            f"{phase['command']}: ratio {phase['ratio']} (target >= {TARGET_RATIO_MIN}: "
            f"{'met' if phase['targets_met']['throughput'] else 'NOT met'}); "
            f"zero errors: {phase['zero_errors']}"
        )
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
