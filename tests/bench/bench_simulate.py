"""The mixed simulator through the local runtime: the highest rate it sustains with no event
lost, event-to-result latency, and the view-to-recommendation lag.

One in-process runtime serves every consumer of the mixed stream (fraud_events, iot_anomaly,
shop_events, pricing, alerts), the recommendations API and what `aib dev` runs beside them on
this stream (fraud's prediction capture, `functions/monitoring.toml`, and monitor_capture), on
models trained for the run. Function logs at ERROR, Powertools metrics discarded with stdout.
The rate steps up (`--rates`); each step puts the mixed scenario for `--duration` seconds
(`aibackend.simulate.run.simulate`: token-bucket paced, outcome read from the bus's archive
and delivery records), then waits for the backlog to drain. A rate is *sustained* when no
event is lost and the backlog is gone within `--keep-up` seconds (5) of the last put: a
runtime that only catches up long after the stream stops is not keeping up, even if it
loses nothing. The first step that is not sustained ends the climb; its throughput
(events processed / (put time + drain time)) is the runtime's capacity. Meanwhile a probe puts a
`Product Viewed` for a fresh session every second and polls the recommendations API until
the answer uses it (`session_items` = 1): the view-to-recommendation lag.

The target (issue 7): 1,000 events/s with put-to-result p99 under 250 ms.

    .venv/bin/python tests/bench/bench_simulate.py [--quick] [--rates 250,500,1000] [--isolate]

The simulator runs in the runtime's process (a thread); `--simulator process` runs it as its
own `aib simulate --json` process against the runtime's state folder, as a user runs it next
to `aib dev` (the dispatchers then learn of new events by polling the bus file, not by a
wake-up from `put_events`: higher latency at the same rate).
`--isolate` serves the consumers from worker processes, as `aib dev --isolate` does.

Writes `bench/results/simulate.json` (`simulate-isolate.json` with `--isolate`; with
`--simulator process`, `-own-simulator` before `.json`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import RESULTS, ROOT, host_speed_s, quiet_stdout
from benchlib import pct as _pct

sys.path.insert(0, str(ROOT))
CONSUMERS = ("fraud_events", "iot_anomaly", "shop_events", "pricing", "alerts", "recommendations")
#: And what `aib dev` does beside them on this stream: fraud_events captures its predictions
#: (functions/monitoring.toml), which monitor_capture records.
CAPTURE = ("monitor_capture",)


class LagProbe(threading.Thread):
    """Every `every_s`, a view of a fresh session; the lag ends when the API's answer uses it.

    The probe watches the session table (a cheap read) and asks the API only once the view is
    recorded: polling the API itself every few milliseconds through a backlog took a third of
    the runtime's CPU and slowed the very consumers it was timing."""

    def __init__(self, rt: Any, client: Any, every_s: float = 1.0) -> None:
        from aibackend.recommend.sessions import session_store

        super().__init__(daemon=True)
        self.rt, self.client, self.every_s = rt, client, every_s
        self.sessions = session_store(rt.settings)
        self.lags_ms: list[float] = []
        self.timeouts = 0
        self.stop = threading.Event()

    def run(self) -> None:
        from aibackend.ports import PutEvent

        n = 0
        while not self.stop.wait(self.every_s):
            n += 1
            session = f"probe-{n}"
            detail = {
                "schema_version": "1",
                "session_id": session,
                "item_id": "i00001",
                "viewed_at": datetime.now(UTC).isoformat(),
            }
            t0 = time.perf_counter()
            self.rt.bus.put_events(
                [PutEvent(source="aib.shop", detail_type="Product Viewed", detail=detail)]
            )
            while time.perf_counter() - t0 < 30:
                if not self.sessions.profile(session, time.time()):
                    time.sleep(0.002)
                    continue
                r = self.client.get("/v1/recommendations/u000001", params={"session": session})
                if r.status_code == 200 and r.json()["session_items"] == 1:
                    self.lags_ms.append((time.perf_counter() - t0) * 1000)
                    break
                time.sleep(0.005)
            else:
                self.timeouts += 1


def train(state: Path) -> None:
    from aibackend.settings import PlatformSettings
    from aibackend.training.local import train_local

    settings = PlatformSettings(state_dir=state)
    for name, rows in (
        ("fraud", 50_000),
        ("recommendations", None),
        ("iot_thermostat", None),
        ("iot_vibration", None),
        ("iot_pressure", None),
    ):
        print(f"training {name} ...", flush=True)
        train_local(name, settings, rows=rows, echo=lambda _line: None)


def simulate_process(state: Path, rate: float, duration: float, drain: float) -> dict[str, Any]:
    """`aib simulate --json` against the runtime's state folder, as its own process (as a user
    runs it next to `aib dev`): the producer does not share the runtime's interpreter."""
    cmd = [
        str(Path(sys.executable).with_name("aib")),
        "simulate",
        "--scenario",
        "mixed",
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        "--seed",
        str(int(rate)),
        "--drain-timeout",
        str(drain),
        "--json",
    ]
    env = {**os.environ, "AIB_STATE_DIR": str(state)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):  # 1: the report says events were lost
        raise RuntimeError(f"aib simulate exited {done.returncode}: {done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def step(
    rt: Any, client: Any, rate: float, duration: float, drain: float, *, own_process: bool
) -> dict[str, Any]:
    from aibackend.simulate.run import simulate

    probe = LagProbe(rt, client)
    probe.start()
    try:
        if own_process:
            out = simulate_process(rt.settings.state_dir, rate, duration, drain)
        else:
            out = simulate(
                rt.bus,
                rt.bus.db_path,
                "mixed",
                rate=rate,
                duration_s=duration,
                seed=int(rate),
                drain_timeout_s=drain,
            ).as_dict()
    finally:
        probe.stop.set()
        probe.join()
    lags = probe.lags_ms
    out["view_to_recommendation"] = {
        "p50_ms": round(_pct(lags, 0.5), 1) if lags else None,
        "p99_ms": round(_pct(lags, 0.99), 1) if lags else None,
        "max_ms": round(max(lags), 1) if lags else None,
        "n": len(lags),
        "timeouts": probe.timeouts,
    }
    return out


def main() -> int:
    if sys.argv[1:2] == ["--train-only"]:
        train(Path(sys.argv[2]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="10 s steps (smoke run)")
    ap.add_argument("--rates", default="250,500,750,1000", help="events/s, ascending")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--drain", type=float, default=60.0, help="seconds to wait for the backlog")
    ap.add_argument(
        "--simulator",
        choices=("process", "thread"),
        default="thread",
        help="the simulator in the runtime's process (default) or as its own `aib simulate`",
    )
    ap.add_argument(
        "--isolate",
        action="store_true",
        help="each consumer in its own process (aib dev --isolate)",
    )
    ap.add_argument("--keep-up", type=float, default=5.0, help="drain time of a sustained rate")
    args = ap.parse_args()
    duration = 10.0 if args.quick else args.duration
    rates = [float(r) for r in args.rates.split(",")]

    work = Path(tempfile.mkdtemp(prefix="aib-bench-simulate-"))
    seed_state = work / "seed"
    os.environ.update(AIB_STATE_DIR=str(seed_state), AIB_ADAPTERS="local")
    os.environ["POWERTOOLS_METRICS_NAMESPACE"] = "aibackend"
    os.environ["POWERTOOLS_LOG_LEVEL"] = "ERROR"
    # In a process of its own: the runtime's process then starts without training's heap
    # (as `aib dev` does), whose every object a full garbage collection would walk again.
    subprocess.run([sys.executable, __file__, "--train-only", str(seed_state)], check=True)

    from aibackend.catalog import load_catalog
    from aibackend.collector import freeze_after_startup
    from aibackend.local.lock import StateLock
    from aibackend.local.runtime import BUS_WORKERS, ISOLATED_BUS_WORKERS, LocalRuntime
    from aibackend.settings import PlatformSettings
    from tests.support import runtime_client

    functions = work / "functions"
    for name in (*CONSUMERS, *CAPTURE):
        shutil.copytree(ROOT / "functions" / name, functions / name)
    shutil.copy(ROOT / "functions" / "monitoring.toml", functions / "monitoring.toml")
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.machine(),
            "cores": os.cpu_count(),
            "load_avg_at_start": os.getloadavg()[0],
            "note": "shared with other jobs during the run; see load_avg per step",
        },
        "host_speed_s": (
            "seconds a fixed pure-Python loop took just before and after each step "
            "(benchlib.host_speed_s): ~0.09-0.10 when the shared host is quiet; at 0.15 "
            "and more, a third of the cores' speed went to other tenants"
        ),
        "scenario": "mixed (40 % payments, 40 % iot, 20 % shop)",
        "runtime": (
            f"aib dev --isolate ({ISOLATED_BUS_WORKERS} bus dispatchers, consumers in worker "
            "processes)"
            if args.isolate
            else f"aib dev (one process, {BUS_WORKERS} bus dispatchers)"
        ),
        "simulator": (
            "its own `aib simulate` process"
            if args.simulator == "process"
            else "a thread of the runtime's process"
        ),
        "duration_s_per_step": duration,
        "sustained_means": f"no event lost and drained within {args.keep_up:g} s of the last put",
        "target": {"rate_per_s": 1000, "p99_ms": 250},
        "steps": [],
    }
    sustained: dict[str, Any] | None = None
    for rate in rates:
        state = work / f"state-{int(rate)}"
        shutil.copytree(seed_state, state)
        os.environ["AIB_STATE_DIR"] = str(state)
        rt = LocalRuntime(
            load_catalog(functions), PlatformSettings(state_dir=state), isolate=args.isolate
        )
        speed_before = host_speed_s()
        print(f"mixed at {rate:g}/s for {duration:g}s ...", flush=True)
        lock = StateLock(state)  # as `aib dev` holds it: `aib simulate` asks who serves
        lock.acquire(f"bench_simulate at {rate:g}/s")
        with quiet_stdout():
            rt.start()
            if args.isolate:  # as `aib dev --isolate` does once started
                freeze_after_startup()
            try:
                out = step(
                    rt,
                    runtime_client(rt),
                    rate,
                    duration,
                    args.drain,
                    own_process=args.simulator == "process",
                )
            finally:
                rt.stop()
                lock.release()
                gc.unfreeze()  # the stopped runtime's objects may go now
        out["load_avg_after"] = os.getloadavg()[0]
        out["host_speed_s"] = {"before": speed_before, "after": host_speed_s()}
        out["throughput_per_s"] = round(out["put"] / (out["duration_s"] + out["drain_s"]), 1)
        out["sustained"] = out["lost"]["total"] == 0 and out["drain_s"] <= args.keep_up
        results["steps"].append(out)
        lost = out["lost"]["total"]
        print(
            f"  put {out['put_rate_per_s']}/s, lost {lost}, drained in {out['drain_s']}s, "
            f"processed p99 {out['to_processed'] and out['to_processed']['p99_ms']} ms, "
            f"throughput {out['throughput_per_s']}/s, host speed {out['host_speed_s']}",
            flush=True,
        )
        if not out["sustained"]:
            break
        sustained = out
    results["highest_sustained_rate"] = (
        None
        if sustained is None
        else {
            "target_rate_per_s": sustained["target_rate_per_s"],
            "put_rate_per_s": sustained["put_rate_per_s"],
            "put_to_transaction_scored": sustained["to_result"].get("Transaction Scored"),
            "put_to_processed": sustained["to_processed"],
            "view_to_recommendation": sustained["view_to_recommendation"],
            "drain_s": sustained["drain_s"],
        }
    )
    shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "simulate-isolate" if args.isolate else "simulate"
    if args.simulator == "process":
        name += "-own-simulator"
    out_path = RESULTS / f"{name}.json"
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["highest_sustained_rate"], indent=2))
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
