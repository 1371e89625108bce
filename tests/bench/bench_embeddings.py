"""Embeddings benchmarks: server throughput next to sentence-transformers, and the handlers.

- Server throughput, sentences/s at batch 32 on this CPU: the real server process (ONNX
  backend) answering `POST /invocations` of 32 texts each, one after another, JSON in and out
  included; next to sentence-transformers' `encode(batch_size=32)` on the same texts in this
  process, both with the same number of threads, in alternating rounds (medians kept). Also
  CPU milliseconds per sentence (the server process's own), steadier than wall time on a
  shared machine. Target: the server at least as fast.
- The same batches straight through the server's backend (no HTTP, no JSON): what the
  protocol costs.
- Warm p50/p99 of the two Lambda handlers with their sample events (`events/apigw/`), in
  process through Powertools + Mangum + FastAPI + the client, the endpoint being that server.

Needs the `embeddings` extra (`make embeddings`). Uses the production `embeddings` model of
the state folder, or builds one into a temporary folder. Writes `bench/results/embeddings.json`.

    .venv/bin/python tests/bench/bench_embeddings.py [--state-dir .aib] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import RESULTS, ROOT, timed

sys.path.insert(0, str(ROOT / "functions"))

BATCH = 32


def texts(n: int) -> list[str]:
    """Catalog product texts and shopper queries, as the services send them."""
    from aibackend.embeddings.products import load_products, load_queries

    pool = [p.text for p in load_products()] + [q.query for q in load_queries()]
    return [pool[i % len(pool)] for i in range(n)]


def model_folder(state_dir: Path) -> tuple[Path, str]:
    """The production embeddings folder of `state_dir`, else a fresh build (temporary)."""
    from aibackend.embeddings.package import local_folder
    from aibackend.errors import ModelLoadError
    from aibackend.settings import PlatformSettings

    try:
        version, folder = local_folder("embeddings", PlatformSettings(state_dir=state_dir))
        return folder, f"{state_dir} v{version}"
    except ModelLoadError:
        from aibackend.embeddings.build import build_embeddings

        tmp = Path(tempfile.mkdtemp(prefix="aib-bench-embeddings-"))
        mv = build_embeddings(PlatformSettings(state_dir=tmp), echo=lambda _l: None)
        return tmp / "buckets" / "models" / "embeddings" / str(mv.version), f"fresh build in {tmp}"


def start_server(folder: Path, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    from aibackend.embeddings.local import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aibackend.embeddings.server",
            "--model-dir",
            str(folder),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--threads",
            str(threads),
            "--log-level",
            "warning",
            "--parent-pid",
            str(os.getpid()),
        ]
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("the server did not answer /ping within 120 s")


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, every thread) of this process, or of `pid` (Linux /proc)."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(run: Callable[[], None], sentences: int, pid: int | None = None) -> tuple[float, float]:
    """(sentences per second of wall time, CPU milliseconds per sentence) of one run. On a
    shared machine the first moves with the neighbours' load; the second much less."""
    c0, t0 = cpu_seconds(pid), time.perf_counter()
    run()
    wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - c0
    return sentences / wall, cpu * 1000 / sentences


def server_run(url: str, sentences: Sequence[str]) -> Callable[[], None]:
    bodies = [
        json.dumps({"inputs": list(sentences[i : i + BATCH])}).encode()
        for i in range(0, len(sentences), BATCH)
    ]

    def run() -> None:
        for body in bodies:
            request = urllib.request.Request(
                f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=60) as r:
                r.read()

    return run


def local_runs(
    backend: Any, st: Any, sentences: Sequence[str]
) -> tuple[Callable[[], None], Callable[[], None]]:
    """In this process: (the server's backend alone on batches of 32, sentence-transformers'
    `encode(batch_size=32)`), each over all `sentences`."""

    def backend_run() -> None:
        for i in range(0, len(sentences), BATCH):
            backend.encode(sentences[i : i + BATCH])

    def st_run() -> None:
        st.encode(sentences, batch_size=BATCH, show_progress_bar=False)

    return backend_run, st_run


def warm_handler(module: str, sample: str, n: int) -> dict[str, Any]:
    import importlib

    from aibackend.local.context import LocalLambdaContext

    handler = importlib.import_module(f"{module}.handler").handler
    event = json.loads((ROOT / "events" / "apigw" / f"{sample}.json").read_text())
    ctx = LocalLambdaContext(function_name=module, memory_limit_in_mb=512, timeout_s=10)
    response = handler(event, ctx)
    assert response["statusCode"] == 200, response
    return timed(lambda: handler(event, ctx), n, warmup=20)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--state-dir", type=Path, default=Path(os.environ.get("AIB_STATE_DIR", ".aib")))
    p.add_argument("--sentences", type=int, default=512)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--handler-calls", type=int, default=300)
    args = p.parse_args(argv)

    import torch

    from aibackend.embeddings.backends import load_backend
    from aibackend.embeddings.build import load_sentence_transformer

    threads = torch.get_num_threads()
    folder, source = model_folder(args.state_dir.resolve())
    sentences = texts(args.sentences)
    proc, url = start_server(folder, threads)
    try:
        st = load_sentence_transformer()
        backend = load_backend(folder, "onnx", threads=threads)

        backend_run, st_run = local_runs(backend, st, sentences)
        runs: dict[str, Callable[[], None]] = {
            "server": server_run(url, sentences),
            "backend": backend_run,
            "sentence_transformers": st_run,
        }
        for run in runs.values():  # warm-up: first batches allocate
            run()
        rates: dict[str, list[float]] = {k: [] for k in runs}
        cpu_ms: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                # The server's own CPU time: what its instance spends (not this client's).
                rate, cost = measure(run, len(sentences), proc.pid if name == "server" else None)
                rates[name].append(rate)
                cpu_ms[name].append(cost)

        os.environ.update(
            {
                "AIB_ADAPTERS": "local",
                "AIB_ENDPOINT_EMBEDDINGS": url,
                "POWERTOOLS_METRICS_NAMESPACE": "bench",
            }
        )
        handlers = {
            "embeddings_2_texts": warm_handler("embeddings", "embeddings", args.handler_calls),
            "search_k5": warm_handler("search", "search", args.handler_calls),
        }
    finally:
        proc.terminate()
        proc.wait(10)

    median = {k: round(statistics.median(v), 1) for k, v in rates.items()}
    cost = {k: round(statistics.median(v), 2) for k, v in cpu_ms.items()}
    st_rate, st_cost = median["sentence_transformers"], cost["sentence_transformers"]
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        "model": source,
        "threads": threads,
        "sentences": len(sentences),
        "batch": BATCH,
        "throughput_sentences_per_s": median,
        "cpu_ms_per_sentence": cost,
        "server_over_sentence_transformers": {
            "throughput": round(median["server"] / st_rate, 2),
            "cpu_efficiency": round(st_cost / cost["server"], 2),
        },
        "backend_over_sentence_transformers": {
            "throughput": round(median["backend"] / st_rate, 2),
            "cpu_efficiency": round(st_cost / cost["backend"], 2),
        },
        "target": "server >= sentence-transformers (ratios >= 1.0)",
        "rounds": {
            "throughput": {k: [round(x, 1) for x in v] for k, v in rates.items()},
            "cpu_ms_per_sentence": {k: [round(x, 2) for x in v] for k, v in cpu_ms.items()},
        },
        "handlers_warm": handlers,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "embeddings.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
