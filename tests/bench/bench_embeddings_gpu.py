"""The embeddings server on a GPU (torch backend), next to sentence-transformers on that GPU.

Runs only where torch sees a CUDA device (CI never does; nothing in the test suite needs one).
On the model folder that `aib build embeddings` wrote:

- `/ping` must report `"device": "cuda"` for the torch backend.
- Parity: the GPU server's vectors against sentence-transformers on the CPU (the reference
  the build checks against) and against the ONNX backend on the CPU, over the build's parity
  sentences plus catalog texts: the lowest cosine.
- Throughput, sentences/s at batch 32: the real server process answering `POST /invocations`
  of 32 texts (JSON in and out), one client sending one request after another, and 8
  concurrent clients (the batcher shares batches); the backend alone (no HTTP, no JSON); and
  sentence-transformers' `encode(batch_size=32)` on the same GPU in this process. Alternating
  rounds, medians kept.
- Latency p50/p99 of 1-text and 32-text requests to the server.

Writes `bench/results/embeddings_gpu.json` (and a copy under `$OUT` when that is set).

    python tests/bench/bench_embeddings_gpu.py --model-dir DIR      # or --state-dir .aib
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_embeddings import BATCH, local_runs, model_folder, server_run, start_server, texts
from benchlib import RESULTS, timed

CLIENTS = 8


def post(url: str, inputs: Sequence[str]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}/invocations",
        data=json.dumps({"inputs": list(inputs)}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        body: dict[str, Any] = json.loads(r.read())
    return body


def concurrent_run(url: str, sentences: Sequence[str], clients: int) -> Callable[[], None]:
    """`clients` threads, each posting its share of the batches one after another."""
    batches = [sentences[i : i + BATCH] for i in range(0, len(sentences), BATCH)]
    shares = [batches[c::clients] for c in range(clients)]
    pool = ThreadPoolExecutor(clients)

    def client(share: list[Sequence[str]]) -> None:
        for batch in share:
            post(url, batch)

    def run() -> None:
        for f in [pool.submit(client, s) for s in shares]:
            f.result()

    return run


def lowest_cosine(a: Any, b: Any) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return round(float(cos.min()), 6)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, help="a built embeddings model folder")
    p.add_argument("--state-dir", type=Path, default=Path(os.environ.get("AIB_STATE_DIR", ".aib")))
    p.add_argument("--sentences", type=int, default=2048)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--device", default="cuda", help="`cpu` is only a dry run of this script on a laptop"
    )
    args = p.parse_args(argv)

    import sentence_transformers
    import torch

    from aibackend.embeddings.artifact import TORCH_DIR
    from aibackend.embeddings.backends import BACKEND_ENV, load_backend
    from aibackend.embeddings.build import PARITY_SENTENCES

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: this benchmark is for a GPU machine", file=sys.stderr)
        return 2
    if args.model_dir is not None:
        folder, source = args.model_dir.resolve(), str(args.model_dir)
    else:
        folder, source = model_folder(args.state_dir.resolve())
    sentences = texts(args.sentences)
    parity_texts = [*PARITY_SENTENCES, *texts(54)]

    os.environ[BACKEND_ENV] = "torch"  # the server process inherits it
    t0 = time.perf_counter()
    proc, url = start_server(folder, torch.get_num_threads())
    server_start_s = time.perf_counter() - t0
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=5) as r:
            ping = json.loads(r.read())
        if ping["device"] != args.device:
            raise SystemExit(f"the torch backend did not take the GPU: /ping says {ping}")

        served = post(url, parity_texts)["embeddings"]
        cpu_reference = sentence_transformers.SentenceTransformer(
            str(folder / TORCH_DIR), device="cpu"
        ).encode(parity_texts, batch_size=BATCH, normalize_embeddings=True)
        onnx_cpu = load_backend(folder, "onnx").encode(parity_texts).vectors
        parity = {
            "texts": len(parity_texts),
            "server_vs_sentence_transformers_cpu": lowest_cosine(served, cpu_reference),
            "server_vs_onnx_cpu": lowest_cosine(served, onnx_cpu),
            "target": ">= 0.999",
        }

        backend = load_backend(folder, "torch")  # in this process, on the GPU too
        st = sentence_transformers.SentenceTransformer(str(folder / TORCH_DIR), device=args.device)

        backend_run, st_run = local_runs(backend, st, sentences)
        runs: dict[str, Callable[[], None]] = {
            "server_1_client": server_run(url, sentences),
            f"server_{CLIENTS}_clients": concurrent_run(url, sentences, CLIENTS),
            "backend_in_process": backend_run,
            "sentence_transformers_same_device": st_run,
        }
        for run in runs.values():  # warm-up: CUDA kernels, allocator, connections
            run()
        rates: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                t0 = time.perf_counter()
                run()
                rates[name].append(len(sentences) / (time.perf_counter() - t0))
        latencies = {
            "1_text": timed(lambda: post(url, sentences[:1]), 200),
            "32_texts": timed(lambda: post(url, sentences[:BATCH]), 100),
        }
        with urllib.request.urlopen(f"{url}/ping", timeout=5) as r:
            after = json.loads(r.read())
    finally:
        proc.terminate()
        proc.wait(10)

    median = {k: round(statistics.median(v), 1) for k, v in rates.items()}
    baseline = "sentence_transformers_same_device"
    st_rate = median[baseline]
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "sentence_transformers": sentence_transformers.__version__,
        },
        "model": source,
        "backend": "torch",
        "server_start_s": round(server_start_s, 1),
        "sentences": len(sentences),
        "batch": BATCH,
        "parity": parity,
        "throughput_sentences_per_s": median,
        "over_sentence_transformers_same_device": {
            k: round(v / st_rate, 2) for k, v in median.items() if k != baseline
        },
        "server_latency": latencies,
        "server_batches": {"forward_passes": after["batches"], "texts": after["texts"]},
        "rounds": {k: [round(x, 1) for x in v] for k, v in rates.items()},
    }
    text = json.dumps(result, indent=2) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "embeddings_gpu.json").write_text(text)
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / "embeddings_gpu.json").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
