"""Generic model service benchmark: warm latency of the BYOM handler for one record, next to
raw `session.run` on the same record's ready tensors (the baseline), measured in the same run.

Trains the messy churn sample (`tests/integration/byom/messy_csv.py`) with `aib model train`'s
code path into a temporary state folder, then calls the Lambda handler in process with the
sample API Gateway event (`events/apigw/byom_predict.json`). Writes `bench/results/byom.json`.

    .venv/bin/python tests/bench/bench_byom.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import RESULTS, ROOT
from benchlib import pct as _pct

sys.path.insert(0, str(ROOT))

NAME = "churn"


def _summary(lat_ms: list[float]) -> dict[str, Any]:
    return {
        "p50_ms": round(_pct(lat_ms, 0.50), 4),
        "p99_ms": round(_pct(lat_ms, 0.99), 4),
        "n": len(lat_ms),
    }


def interleaved(cases: dict[str, Callable[[], Any]], n: int, rounds: int = 10) -> dict[str, Any]:
    """Latency of each case, `n` calls each, in interleaved rounds (same machine noise)."""
    for fn in cases.values():
        for _ in range(200):  # warm-up
            fn()
    lat: dict[str, list[float]] = {k: [] for k in cases}
    per_round = max(1, n // rounds)
    for _ in range(rounds):
        for k, fn in cases.items():
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                lat[k].append((time.perf_counter() - t0) * 1000)
    return {k: _summary(v) for k, v in lat.items()}


def train(state: Path) -> int:
    """Train the churn sample into `state` (subprocess, SageMaker contract); its version."""
    from aibackend.byom.training.local import train_csv
    from aibackend.settings import PlatformSettings
    from tests.integration.byom.messy_csv import churn_csv

    data = churn_csv(state.parent / "churn.csv")
    mv = train_csv(
        data,
        name=NAME,
        target="Churned",
        settings=PlatformSettings(state_dir=state),
        echo=lambda _line: None,
    )
    return mv.version


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    args = ap.parse_args()
    n = 1000 if args.quick else 10_000

    tmp = Path(tempfile.mkdtemp(prefix="aib-bench-byom-"))
    state = tmp / "state"
    version = train(state)
    from aibackend.settings import model_version_env

    # As CDK and `aib dev` set them for the function.
    os.environ.update(
        {
            "AIB_STATE_DIR": str(state),
            "AIB_ADAPTERS": "local",
            model_version_env(NAME): str(version),
            "POWERTOOLS_METRICS_NAMESPACE": "aibackend",
            "POWERTOOLS_SERVICE_NAME": NAME,
        }
    )
    event = json.loads((ROOT / "events" / "apigw" / "byom_predict.json").read_text())
    record = json.loads(event["body"])

    # Metrics go to stdout as EMF on every invocation; keep them out of the terminal.
    real_stdout = sys.stdout
    sys.stdout = Path(os.devnull).open("w")  # noqa: SIM115 - closed in `finally`
    try:
        from aibackend.byom.runtime import load_served_model
        from aibackend.byom.service import build_handler
        from aibackend.local.context import LocalLambdaContext

        handler = build_handler(NAME)
        model = load_served_model(NAME)
        ctx = LocalLambdaContext(function_name=NAME, memory_limit_in_mb=1769, timeout_s=10)
        response = handler(event, ctx)
        assert response["statusCode"] == 200, response
        # The baseline: the same record's tensors, built once, through the bare session.
        feed = model.contract.feed([[record.get(c.feature.name)] for c in model.contract.columns])
        session, output = model.session, [model.contract.output]
        warm = interleaved(
            {
                "handler_single_record": lambda: handler(event, ctx),
                "raw_session_run": lambda: session.run(output, feed),
            },
            n,
        )
        batch_event = dict(event, body=json.dumps({"records": [record] * 1000}))
        assert handler(batch_event, ctx)["statusCode"] == 200
        batch = interleaved({"handler_batch_1000": lambda: handler(batch_event, ctx)}, 50, 5)
    finally:
        sys.stdout.close()
        sys.stdout = real_stdout

    handler_p50 = warm["handler_single_record"]["p50_ms"]
    raw_p50 = warm["raw_session_run"]["p50_ms"]
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.machine(),
            "cores": os.cpu_count(),
        },
        "model": {
            "name": NAME,
            "version": version,
            "features": len(model.card.features),
            "graph_inputs": len(model.card.inputs),
            "metrics": model.card.metrics,
        },
        "warm_handler_single_record": warm["handler_single_record"],
        "baseline_raw_session_run_single_record": warm["raw_session_run"],
        "handler_overhead_p50_ms": round(handler_p50 - raw_p50, 4),
        "handler_batch_1000_records_report_only": {
            **batch["handler_batch_1000"],
            "rows_per_s_at_p50": round(1000 / (batch["handler_batch_1000"]["p50_ms"] / 1000)),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "byom.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
