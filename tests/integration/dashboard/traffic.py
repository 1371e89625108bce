"""Monitoring data for the dashboard, made by the real code paths of a running runtime:

1. `aib simulate --scenario payments` (in process, a few seconds): fraud_events scores
   `Transaction Created` events and captures them; plus scoring requests to
   `POST /v1/fraud/score` over HTTP;
2. earlier hours: the current hour's captured records sent again through the
   `monitor_capture` function as SQS messages, stamped 1, 2, 3 hours earlier under new
   inference ids (one of those hours with amounts x3, so it drifts): local traffic all lands
   in the current hour, and a time series needs several;
3. labels for 3/4 of the predictions through `POST /v1/feedback`: the generator's ground truth
   for the scored transactions (20% fraud, so every hour has both classes), Bernoulli(score)
   for the simulated ones (their ground truth is not part of what is captured);
4. the monitor (`monitor_models`, what `aib monitor run` runs) over every hour and the day.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np

from aibackend.fraud.generator import generate_transactions, to_records
from aibackend.local.runtime import LocalRuntime
from aibackend.monitoring.labels import SqliteLabelStore
from aibackend.monitoring.profiles import WindowKey
from aibackend.simulate.run import simulate
from tests.support import bearer, wait_for

#: Hours before the current one that get replayed captures; this one's amounts are tripled.
EARLIER = (3, 2, 1)
SHIFTED = 2
#: `Transaction.amount`'s upper bound: a tripled amount above it would be refused at capture.
MAX_AMOUNT = 1_000_000.0


@dataclass(frozen=True)
class Traffic:
    hours: list[WindowKey]
    predictions: int
    functions: set[str]


def make_traffic(rt: LocalRuntime, base: str, *, rounds: int = 1, seed: int = 7) -> Traffic:
    """`rounds` of 3 s of simulated payments at 80/s plus 300 scored transactions (more
    rounds spread the functions' traffic over more minutes: the README's screenshot)."""
    now = datetime.now(UTC)
    current = WindowKey.for_time(now, "hour")
    key = rt.access.ensure_dev_key()[0]
    with httpx.Client(base_url=base, headers={"x-api-key": key}, timeout=30) as http:
        expected = 0
        truth: dict[str, int] = {}
        for k in range(rounds):
            sim = simulate(
                rt.bus,
                rt.bus.db_path,
                "payments",
                rate=80,
                duration_s=3,
                seed=seed + k,
                drain_timeout_s=30,
            )
            assert sim.lost.total == 0, sim.lost
            truth |= _score(http, n=300, seed=seed + k)
            expected += sim.put + 300
            if k + 1 < rounds:
                time.sleep(20)
        # (up to the next hour's end: a run that crosses an hour still counts all)
        until = current.end + timedelta(hours=1)
        wait_for(lambda: _ledger(rt).window(current.start, until).predictions >= expected, 60)
        records = _captured(rt, current) + _captured(rt, WindowKey(current.end, "hour"))
        for back in EARLIER:
            _replay(rt, records, back, shift_amounts=back == SHIFTED)
        hours = sorted(
            {
                WindowKey.for_time(datetime.fromisoformat(r["at"]) - timedelta(hours=b), "hour")
                for r in records
                for b in (*EARLIER, 0)
            },
            key=lambda k: k.start,
        )
        labels = _labels(records, truth, seed)
        all_ids = [*labels, *(f"h{b}-{i}" for b in EARLIER for i in labels)]
        _post_labels(http, rt, all_ids, list(labels.values()) * (1 + len(EARLIER)), seed)
    _monitor(rt, hours)
    return Traffic(
        hours=hours,
        predictions=len(all_ids),
        functions={
            "fraud_score",
            "fraud_events",
            "monitor_capture",
            "monitor_feedback",
            "monitor_models",
        },
    )


def _ledger(rt: LocalRuntime) -> SqliteLabelStore:
    return SqliteLabelStore(rt.settings.state_dir / "monitoring" / "labels-fraud.db")


def _score(http: httpx.Client, n: int, seed: int) -> dict[str, int]:
    """Score `n` generated transactions; their ground truth by transaction id."""
    cols = generate_transactions(30 * n, seed=seed, fraud_rate=0.2)
    rows = np.sort(np.random.default_rng(seed).choice(30 * n, n, replace=False))
    picked = {k: np.asarray(v)[rows] for k, v in cols.items()}
    records = to_records(picked)
    for first in range(0, n, 20):
        r = http.post("/v1/fraud/score", json={"transactions": records[first : first + 20]})
        assert r.status_code == 200, r.text
    return {
        str(t): int(y) for t, y in zip(picked["transaction_id"], picked["is_fraud"], strict=True)
    }


def _captured(rt: LocalRuntime, hour: WindowKey) -> list[dict[str, Any]]:
    folder = (
        rt.settings.state_dir
        / "buckets"
        / "monitoring"
        / "capture"
        / "fraud"
        / f"{hour.start:%Y-%m-%d}"
        / f"{hour.start:%H}"
    )
    seen: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            seen[r["inference_id"]] = r
    return list(seen.values())


def _replay(
    rt: LocalRuntime, records: list[dict[str, Any]], back: int, *, shift_amounts: bool
) -> None:
    """The records as capture messages of 50, `back` hours earlier, through monitor_capture."""
    moved = []
    for r in records:
        at = datetime.fromisoformat(r["at"]) - timedelta(hours=back)
        inputs = dict(r["inputs"])
        if shift_amounts:
            inputs["amount"] = min(round(inputs["amount"] * 3, 2), MAX_AMOUNT)
        moved.append(
            r
            | {
                "inference_id": f"h{back}-{r['inference_id']}",
                "at": at.isoformat(),
                "inputs": inputs,
            }
        )
    messages = [moved[i : i + 50] for i in range(0, len(moved), 50)]
    for chunk in range(0, len(messages), 10):
        event = {"Records": [_sqs(m) for m in messages[chunk : chunk + 10]]}
        out = rt.hosts["monitor_capture"].invoke(event)
        assert out == {"batchItemFailures": []}, out


def _sqs(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": "replayed",
        "body": json.dumps(records),
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:inference-capture",
        "awsRegion": "eu-west-1",
    }


def _labels(records: list[dict[str, Any]], truth: dict[str, int], seed: int) -> dict[str, int]:
    """Inference id -> label of each captured record."""
    rng = np.random.default_rng(seed)
    out = {}
    for r in records:
        known = truth.get(str(r["inputs"]["transaction_id"]))
        drawn = int(rng.random() < float(r["output"]["score"]))
        out[str(r["inference_id"])] = drawn if known is None else known
    return out


def _post_labels(
    http: httpx.Client, rt: LocalRuntime, ids: list[str], values: list[int], seed: int
) -> None:
    """Labels of 3/4 of `ids`, 1,000 a request (the route's limit)."""
    rng = np.random.default_rng(seed)
    labels = [
        {"inference_id": i, "label": y}
        for i, y in zip(ids, values, strict=True)
        if rng.random() < 0.75
    ]
    headers = bearer(rt.access, "feedback:write")
    for first in range(0, len(labels), 1000):
        body = {"model": "fraud", "labels": labels[first : first + 1000]}
        r = http.post("/v1/feedback", json=body, headers=headers)
        assert r.status_code == 202, r.text


def _monitor(rt: LocalRuntime, hours: list[WindowKey]) -> None:
    windows = [f"hour:{h.start:%Y-%m-%dT%H}" for h in hours]
    windows += sorted({f"day:{h.start:%Y-%m-%d}" for h in hours})
    event = {
        "version": "0",
        "id": f"dashboard-{uuid.uuid4()}",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": datetime.now(UTC).isoformat(),
        "region": "eu-west-1",
        "resources": [],
        "detail": {"model": "fraud", "windows": windows},
    }
    out = rt.hosts["monitor_models"].invoke(event)
    assert len(out["reports"]) == len(windows), out
