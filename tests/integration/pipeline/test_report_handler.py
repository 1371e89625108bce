"""The reporting feed's Lambda handler answers the sample scheduled event (events/schedule/):
it reports the UTC day before the event's time."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from aibackend.adapters.local import LocalObjectStore
from aibackend.local.runtime import LocalRuntime
from aibackend.pipeline.messages import jsonl

pytestmark = pytest.mark.slow

BUCKET = "pipeline-data"
Event = Callable[[str], dict[str, Any]]


def test_report_handler_given_the_scheduled_event_reports_the_previous_day(
    quiet_runtime: LocalRuntime, event: Event
) -> None:
    # GIVEN the sample scheduled event (00:15 UTC on 2026-11-27) and a curated row of the 26th
    aws = event("schedule/pipeline_report")
    store = LocalObjectStore(quiet_runtime.settings.state_dir / "buckets" / BUCKET, bucket=BUCKET)
    row = {
        "transaction_id": "t1",
        "amount": 40.0,
        "currency": "EUR",
        "merchant_category": "fuel",
        "timestamp": "2026-11-26T08:00:00+00:00",
        "score": 0.05,
        "band": "low",
    }
    store.put("curated/transactions/date=2026-11-26/r1-0.jsonl", jsonl([row]))
    # WHEN the report handler gets it
    answer = quiet_runtime.hosts["pipeline_report"].invoke(aws)
    # THEN it reported the 26th and published its event
    assert answer["date"] == "2026-11-26" and answer["event_id"]
    assert answer["report_key"] == "reports/daily/2026-11-26.json"
    report = json.loads(store.get(answer["report_key"]))
    assert (
        report["totals"]["volume"] == 1
        and report["by_merchant_category"]["fuel"]["amount_eur"] == 40.0
    )
