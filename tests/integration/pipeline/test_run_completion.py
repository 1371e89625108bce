"""Under the local runtime: a run completes once with its quarantine report, and a file ingest
cannot read completes as failed with its reason, through the status route too."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from aibackend.adapters.local import LocalObjectStore
from aibackend.catalog import failure_queue
from aibackend.fraud.generator import generate_transactions, write_csv
from aibackend.local.runtime import LocalRuntime
from aibackend.pipeline.completion import report_key
from aibackend.pipeline.report import build_report
from aibackend.pipeline.runs import RunStatus, run_id, run_store, status
from aibackend.pipeline.store import utc_date
from tests.support import runtime_client, wait_for

pytestmark = pytest.mark.slow

BUCKET = "pipeline-data"


def _data(rt: LocalRuntime) -> LocalObjectStore:
    return LocalObjectStore(rt.settings.state_dir / "buckets" / BUCKET, bucket=BUCKET)


def _drop(rt: LocalRuntime, key: str, content: bytes) -> str:
    return run_id(BUCKET, key, _data(rt).put(key, content).etag)


def _completed(rt: LocalRuntime, rid: str, timeout: float = 30.0) -> RunStatus:
    def done() -> RunStatus | None:
        s = status(run_store(rt.settings), rid)
        return s if s is not None and s.completed_at is not None else None

    return wait_for(done, timeout=timeout)


def _rows(tmp_path: Path, n: int, seed: int) -> list[dict[str, str]]:
    path = tmp_path / f"gen-{seed}.csv"
    write_csv(generate_transactions(n, seed=seed), path)
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _csv(rows: list[dict[str, str]], fields: list[str] | None = None) -> bytes:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=fields or list(rows[0]), extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return out.getvalue().encode()


def test_a_run_completes_once_with_its_quarantine_report(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    # GIVEN a 2,500-row CSV (3 chunks) with bad amounts in rows 10 and 1,500 and a bad currency
    # in row 2,001 (data rows, from 1)
    rows = _rows(tmp_path, 2500, seed=21)
    rows[9]["amount"] = "-1"
    rows[1499]["amount"] = "-2"
    rows[2000]["currency"] = "XYZ"
    rid = _drop(runtime, "raw/transactions/completion.csv", _csv(rows))
    # WHEN it has gone through the pipeline
    s = _completed(runtime, rid)
    # THEN it succeeded, and the status route shows when it completed and where the report is
    body = runtime_client(runtime).get(f"/v1/pipeline/runs/{rid}").json()
    assert body["state"] == "succeeded" and body["report_key"] == report_key(rid)
    assert body["completed_at"] is not None and s.counts["quarantined"] == 3
    # AND the report counts the three rows by reason and column, with their rows in the file
    report: dict[str, Any] = json.loads(_data(runtime).get(report_key(rid)))
    assert (report["rows"], report["quarantined"], report["failure"]) == (2500, 3, None)
    assert report["reasons"]["amount: must be greater than 0"] == {
        "count": 2,
        "first_rows": [10, 1500],
    }
    assert report["reasons"]["currency: unsupported currency code"]["first_rows"] == [2001]
    assert report["columns"] == {"amount": 2, "currency": 1}
    assert report["row_files"] == [f"quarantine/{rid}/{c}.jsonl" for c in (0, 1, 2)]


def test_the_daily_reports_over_real_curated_output_count_its_rows(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    # GIVEN a run through the whole pipeline, its rows stored under one or more UTC days
    rows = _rows(tmp_path, 1500, seed=23)
    rows[7]["amount"] = "-1"
    rid = _drop(runtime, "raw/transactions/report-days.csv", _csv(rows))
    s = _completed(runtime, rid)
    days = sorted(
        {o.key.split("date=", 1)[1][:10] for o in _data(runtime).list("curated/transactions/")}
    )
    # WHEN each day with curated output is reported
    reports = {d: build_report(_data(runtime), date.fromisoformat(d)) for d in days}
    # THEN each day's volume and high-risk count are those of its curated rows (every run's)
    for d, report in reports.items():
        stored = [
            json.loads(line)
            for o in _data(runtime).list(f"curated/transactions/date={d}/")
            for line in _data(runtime).get(o.key).splitlines()
        ]
        assert report.totals.volume == len(stored)
        assert report.totals.high_risk == sum(r["band"] == "high" for r in stored)
    # AND the run's quarantined row counts on its own day, a day the run stored rows on
    day = utc_date(rows[7]["timestamp"])
    assert s.counts["stored"] == 1499 and rid in reports[day].run_ids
    assert reports[day].totals.quarantined >= 1


def test_a_csv_without_required_columns_fails_at_once_and_says_which(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    # GIVEN a CSV without the `currency` column
    rows = _rows(tmp_path, 20, seed=22)
    content = _csv(rows, [f for f in rows[0] if f != "currency"])
    # WHEN it is dropped into the inbox
    rid = _drop(runtime, "raw/transactions/no-currency.csv", content)
    s = _completed(runtime, rid)
    # THEN the run completed as failed, with the missing column in the status route and report
    body = runtime_client(runtime).get(f"/v1/pipeline/runs/{rid}").json()
    assert body["state"] == "failed" == s.state
    assert "lacks required column(s) currency" in body["run"]["failure"]["reason"]
    assert body["run"]["failure"]["retryable"] is False
    assert body["counts"]["received"] == 0
    report = json.loads(_data(runtime).get(report_key(rid)))
    assert report["failure"] == body["run"]["failure"]


def test_a_corrupt_gzip_fails_its_run_and_is_not_retried(runtime: LocalRuntime) -> None:
    # GIVEN bytes named .csv.gz that are no gzip stream
    rid = _drop(runtime, "raw/transactions/broken.csv.gz", b"\x1f\x8bnot really gzip")
    # WHEN it is dropped into the inbox
    s = _completed(runtime, rid)
    # THEN its run failed on the first attempt, and nothing went to the on-failure queue
    assert s.state == "failed" and s.run.failure is not None
    assert s.run.failure.attempts == 1 and "gzip stream" in s.run.failure.reason
    failures = runtime.queues.get(failure_queue("pipeline_ingest")).stats()
    assert failures.visible == 0
