"""The daily reporting feed: totals of one UTC day from hand-made curated and quarantine objects,
the same bytes when run again, one `Pipeline Run Completed` event per run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from aibackend.adapters.local import LocalObjectStore
from aibackend.cli import main
from aibackend.contracts import parse
from aibackend.contracts.pipeline import PipelineRunCompletedV1
from aibackend.pipeline.messages import jsonl
from aibackend.pipeline.report import (
    DETAIL_TYPE,
    build_report,
    previous_day,
    publish_daily,
    report_key,
)
from aibackend.ports import PutEvent, PutEventsResult

DAY = date(2026, 11, 26)
BUCKET = "pipeline-data"


class RecordingBus:
    def __init__(self) -> None:
        self.events: list[PutEvent] = []

    def put_events(self, entries: Sequence[PutEvent]) -> PutEventsResult:
        self.events.extend(entries)
        return PutEventsResult(event_ids=tuple(f"e{len(self.events)}" for _ in entries))


def _row(txn: str, amount: float, currency: str, category: str, score: float, band: str) -> Any:
    return {
        "transaction_id": txn,
        "amount": amount,
        "currency": currency,
        "merchant_category": category,
        "timestamp": "2026-11-26T10:00:00+00:00",
        "score": score,
        "band": band,
    }


def _bad(index: int, timestamp: str | None, category: str = "grocery") -> Any:
    row = {"transaction_id": f"q{index}", "merchant_category": category, "timestamp": timestamp}
    return {"index": index, "reason": "amount: missing", "row": row}


@pytest.fixture
def bucket(tmp_path: Path) -> LocalObjectStore:
    """Two runs' output: run `aaa` stored 3 rows on DAY (2 chunks) and 1 row the day after;
    run `bbb` stored 1 row on DAY; quarantine of `aaa`: one row of DAY, one of the day after,
    one without a readable timestamp; `zzz` (no row on DAY) quarantined one row of DAY."""
    store = LocalObjectStore(tmp_path / "bucket", bucket=BUCKET)
    day = "curated/transactions/date=2026-11-26"
    store.put(
        f"{day}/aaa-0.jsonl",
        jsonl(
            [
                _row("t1", 100.0, "EUR", "grocery", 0.1, "low"),
                _row("t2", 50.0, "USD", "travel", 0.9, "high"),
            ]
        ),
    )
    store.put(f"{day}/aaa-1.jsonl", jsonl([_row("t3", 10.0, "EUR", "grocery", 0.3, "medium")]))
    store.put(f"{day}/bbb-0.jsonl", jsonl([_row("t4", 20.0, "GBP", "travel", 0.7, "high")]))
    nxt = _row("t5", 999.0, "EUR", "grocery", 0.99, "high")
    store.put("curated/transactions/date=2026-11-27/aaa-1.jsonl", jsonl([nxt]))
    store.put(
        "quarantine/aaa/0.jsonl",
        jsonl([_bad(0, "2026-11-26T23:59:59+00:00"), _bad(1, "2026-11-27T00:00:01+00:00")]),
    )
    store.put("quarantine/aaa/1.jsonl", jsonl([_bad(0, "not a time", category="")]))
    store.put("quarantine/aaa/report.json", b"{}")
    store.put("quarantine/zzz/0.jsonl", jsonl([_bad(0, "2026-11-26T12:00:00+00:00")]))
    return store


def test_the_day_is_aggregated_from_its_curated_rows_and_its_quarantine(
    bucket: LocalObjectStore,
) -> None:
    # GIVEN the hand-made objects WHEN the day is aggregated
    report = build_report(bucket, DAY)
    # THEN it counts the day's 4 stored rows, in EUR (USD at 0.92, GBP at 1.17)
    t = report.totals
    assert t.volume == 4 and t.amount_eur == round(100 + 50 * 0.92 + 10 + 20 * 1.17, 2)
    # AND the fraud rate is the share of high-risk rows, with their mean score
    assert (t.high_risk, t.fraud_rate, t.mean_score) == (2, 0.5, 0.5)
    # AND the quarantine of the day's runs on the day: 1 of 5 rows; undated ones apart
    assert (t.quarantined, t.quarantine_rate, report.undated_quarantined) == (1, 0.2, 1)
    assert report.run_ids == ["aaa", "bbb"]
    # AND the same per merchant category
    grocery, travel = report.by_merchant_category["grocery"], report.by_merchant_category["travel"]
    assert (grocery.volume, grocery.amount_eur, grocery.high_risk, grocery.quarantined) == (
        2,
        110.0,
        0,
        1,
    )
    assert grocery.mean_score == 0.2 and grocery.quarantine_rate == round(1 / 3, 6)
    assert (travel.volume, travel.high_risk, travel.fraud_rate, travel.mean_score) == (
        2,
        2,
        1.0,
        0.8,
    )
    assert travel.amount_eur == round(50 * 0.92 + 20 * 1.17, 2)


def test_a_day_without_output_reports_zeros(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "empty", bucket=BUCKET)
    report = build_report(store, DAY)
    assert report.totals.volume == 0 and report.totals.mean_score is None
    assert report.by_merchant_category == {} and report.run_ids == []


def test_publishing_writes_the_report_and_one_event_with_the_totals(
    bucket: LocalObjectStore,
) -> None:
    # GIVEN a bus that records what it is given
    bus = RecordingBus()
    # WHEN the day is published
    done = publish_daily(bucket, bus, DAY)
    # THEN the report is at reports/daily/<day>.json
    assert done.key == report_key(DAY) == "reports/daily/2026-11-26.json"
    stored = json.loads(bucket.get(done.key))
    assert stored["totals"]["volume"] == 4 and stored["date"] == "2026-11-26"
    # AND exactly one Pipeline Run Completed event went out, saying where and what
    (event,) = bus.events
    assert (event.source, event.detail_type, event.bus) == ("aib.pipeline", DETAIL_TYPE, "aib")
    detail = event.detail
    assert (detail["date"], detail["report_key"], detail["bucket"]) == (
        "2026-11-26",
        done.key,
        BUCKET,
    )
    assert detail["totals"] == stored["totals"] and detail["run_ids"] == ["aaa", "bbb"]
    # AND it fits its published contract, as a consumer reads it
    parsed = parse({"id": "e-1", "detail-type": event.detail_type, "detail": detail})
    assert isinstance(parsed.detail, PipelineRunCompletedV1)


def test_running_the_same_day_again_rewrites_the_same_bytes(bucket: LocalObjectStore) -> None:
    # GIVEN the day published once
    bus = RecordingBus()
    first = publish_daily(bucket, bus, DAY)
    before = bucket.get(first.key)
    # WHEN it is published again over the same objects
    publish_daily(bucket, bus, DAY)
    # THEN the report's bytes are the same, and each run published one event with the same key
    assert bucket.get(first.key) == before
    keys = [e.detail["idempotency_key"] for e in bus.events]
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0].startswith("2026-11-26#")


def test_new_output_for_the_day_changes_the_report_and_its_key(bucket: LocalObjectStore) -> None:
    # GIVEN the day published, then a late chunk stored for it
    bus = RecordingBus()
    publish_daily(bucket, bus, DAY)
    late = _row("t9", 5.0, "EUR", "grocery", 0.1, "low")
    bucket.put("curated/transactions/date=2026-11-26/ccc-0.jsonl", jsonl([late]))
    # WHEN it is published again THEN the report counts it, under a new idempotency key
    again = publish_daily(bucket, bus, DAY)
    assert again.report.totals.volume == 5 and "ccc" in again.report.run_ids
    assert bus.events[0].detail["idempotency_key"] != bus.events[1].detail["idempotency_key"]


def test_a_bus_refusal_fails_the_run_for_a_retry(bucket: LocalObjectStore) -> None:
    class RefusingBus:
        def put_events(self, entries: Sequence[PutEvent]) -> PutEventsResult:
            return PutEventsResult(event_ids=(None,), failures=((0, "Throttled", "slow down"),))

    with pytest.raises(RuntimeError, match="event bus refused Pipeline Run Completed"):
        publish_daily(bucket, RefusingBus(), DAY)


def test_the_schedule_reports_the_day_before() -> None:
    assert previous_day(datetime(2026, 11, 27, 0, 15, tzinfo=UTC)) == DAY
    assert previous_day(datetime(2026, 1, 1, 0, 15, tzinfo=UTC)) == date(2025, 12, 31)


def test_the_cli_reports_a_day_on_demand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the local state's data bucket holding a day's output
    monkeypatch.setenv("AIB_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("AIB_ADAPTERS", raising=False)
    store = LocalObjectStore(tmp_path / "buckets" / BUCKET, bucket=BUCKET)
    store.put(
        "curated/transactions/date=2026-11-26/aaa-0.jsonl",
        jsonl([_row("t1", 12.5, "EUR", "grocery", 0.9, "high")]),
    )
    # WHEN `aib pipeline report --date 2026-11-26` runs
    assert main(["pipeline", "report", "--date", "2026-11-26"]) == 0
    out = capsys.readouterr().out.splitlines()
    # THEN it wrote the report and printed a line per category and the total
    assert out[0] == "reports/daily/2026-11-26.json in pipeline-data (1 run(s))"
    assert out[2].split() == ["grocery", "1", "12.50", "1", "100.00%", "0.9000", "0", "0.00%"]
    assert out[3].split()[0:2] == ["total", "1"]
    assert json.loads(store.get("reports/daily/2026-11-26.json"))["totals"]["volume"] == 1


def test_the_cli_refuses_a_date_it_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIB_STATE_DIR", str(tmp_path))
    assert main(["pipeline", "report", "--date", "26/11/2026"]) == 2
    assert "give a UTC day as YYYY-MM-DD" in capsys.readouterr().err
