"""Inference capture end to end under `aib dev`: fraud_score's predictions reach the monitoring
bucket through the capture queue and `monitor_capture`, masked, once each."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aibackend.adapters.local import LocalObjectStore
from aibackend.local.runtime import LocalRuntime
from tests.support import FUNCTIONS, running_runtime, runtime_client, wait_for

PAYLOADS = Path(__file__).resolve().parents[2] / "events" / "payloads"


@pytest.fixture(scope="module")
def runtime(fraud_state: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    root = tmp_path_factory.mktemp("capture")
    functions = root / "functions"
    for name in ("fraud_score", "monitor_capture"):
        shutil.copytree(
            FUNCTIONS / name, functions / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(FUNCTIONS / "monitoring.toml", functions / "monitoring.toml")
    with running_runtime(functions, root / "state", seed_state=fraud_state) as rt:
        yield rt


def captured(rt: LocalRuntime) -> list[dict[str, Any]]:
    store = LocalObjectStore(rt.settings.state_dir / "buckets" / "monitoring", bucket="monitoring")
    return [
        json.loads(line)
        for o in store.list("capture/fraud/")
        for line in store.get(o.key).splitlines()
    ]


def test_every_scored_transaction_is_captured_once_with_its_ids_and_the_card_masked(
    runtime: LocalRuntime,
) -> None:
    # GIVEN fraud capture at rate 1.0 with card_id masked (functions/monitoring.toml)
    client = runtime_client(runtime, scopes=("predict:fraud",))
    batch = json.loads((PAYLOADS / "transactions_batch.json").read_text())
    # WHEN a batch is scored on v1 and one transaction on v2
    r1 = client.post("/v1/fraud/score", json=batch)
    r2 = client.post("/v2/fraud/score", json=batch["transactions"][0])
    assert r1.status_code == r2.status_code == 200
    results = [*r1.json()["results"], *r2.json()["results"]]
    # THEN each prediction is captured exactly once, under its own inference id
    got = wait_for(lambda: (c := captured(runtime)) and len(c) >= len(results) and c)
    assert sorted(c["inference_id"] for c in got) == sorted(r["inference_id"] for r in results)
    by_id = {c["inference_id"]: c for c in got}
    first = by_id[results[0]["inference_id"]]
    # AND it holds the request id as correlation id, the model version, inputs and output
    assert first["correlation_id"] == r1.json()["request_id"]
    assert first["model"] == {"name": "fraud", "version": r1.json()["model"]["version"]}
    assert first["output"]["score"] == results[0]["score"]
    assert first["inputs"]["amount"] == batch["transactions"][0]["amount"]
    # AND the card id never left the function; the bias attributes did
    assert all(c["inputs"]["card_id"] == "*****" for c in got)
    assert "customer_age_band" in first["inputs"]
    v2 = by_id[results[-1]["inference_id"]]
    assert v2["output"] == {
        "score": results[-1]["risk"]["score"],
        "decision": results[-1]["decision"]["action"],
    }
