"""Each pipeline handler answers its AWS sample event (events/), and a queue stage given a bad
batch reports only the bad messages in `batchItemFailures`."""

from __future__ import annotations

import copy
import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from aibackend.adapters.local import LocalObjectStore
from aibackend.adapters.local_queue import SqliteQueueService
from aibackend.local.runtime import LocalRuntime
from aibackend.pipeline.messages import to_records
from aibackend.pipeline.runs import RunInfo, run_id, run_store, status
from aibackend.ports import Queue

pytestmark = pytest.mark.slow

BUCKET = "pipeline-data"
Event = Callable[[str], dict[str, Any]]


def runtime_queue(rt: LocalRuntime, name: str) -> Queue:
    return SqliteQueueService(rt.settings.state_dir / "queues.db").get(name)


def _data(rt: LocalRuntime) -> LocalObjectStore:
    return LocalObjectStore(rt.settings.state_dir / "buckets" / BUCKET, bucket=BUCKET)


def test_ingest_handler_given_the_s3_notification_ingests_the_object(
    quiet_runtime: LocalRuntime, event: Event
) -> None:
    # GIVEN the sample S3 notification and the object it names: its two rows as CSV
    aws = event("s3/pipeline_object_created")
    obj = aws["Records"][0]["s3"]["object"]
    payload = json.loads(event("sqs/pipeline_validate_batch")["Records"][0]["body"])["columns"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(payload), lineterminator="\n")
    writer.writeheader()
    writer.writerows(to_records(payload))
    _data(quiet_runtime).put(obj["key"], out.getvalue().encode())
    # WHEN the ingest handler gets the notification
    answer = quiet_runtime.hosts["pipeline_ingest"].invoke(aws)
    # THEN it recorded the run of that object version, two rows in one chunk
    rid = run_id(BUCKET, obj["key"], obj["eTag"])
    assert answer == {"runs": [{"run_id": rid, "rows": 2, "chunks": 1}]}
    s = status(run_store(quiet_runtime.settings), rid)
    assert s is not None and s.counts["received"] == 2 and s.run.key == obj["key"]
    # AND the chunk waits on the validation queue, inline
    (msg,) = runtime_queue(quiet_runtime, "pipeline-validate").receive(10)
    assert json.loads(msg.body) == {"run_id": rid, "bucket": BUCKET, "chunk": 0, "columns": payload}


def test_validate_handler_given_the_sqs_batch_reports_no_failure(
    quiet_runtime: LocalRuntime, event: Event
) -> None:
    # GIVEN the sample SQS batch: one chunk of one valid and one invalid row
    aws = event("sqs/pipeline_validate_batch")
    rid = json.loads(aws["Records"][0]["body"])["run_id"]
    # WHEN the validate handler gets it
    answer = quiet_runtime.hosts["pipeline_validate"].invoke(aws)
    # THEN no message failed, and the invalid row is quarantined with its reason
    assert answer == {"batchItemFailures": []}
    (line,) = _data(quiet_runtime).get(f"quarantine/{rid}/0.jsonl").splitlines()
    assert json.loads(line)["reason"] == "amount: must be greater than 0"


def test_store_handler_given_the_sqs_batch_stores_the_rows(
    quiet_runtime: LocalRuntime, event: Event
) -> None:
    # GIVEN the sample SQS batch of the store queue: one valid row of 2026-11-27 (UTC)
    aws = event("sqs/pipeline_store_batch")
    body = json.loads(aws["Records"][0]["body"])
    # WHEN the store handler gets it
    answer = quiet_runtime.hosts["pipeline_store"].invoke(aws)
    # THEN the row is in its date's partition, keyed by run and chunk
    assert answer == {"batchItemFailures": []}
    key = f"curated/transactions/date=2026-11-27/{body['run_id']}-0.jsonl"
    stored = [json.loads(x) for x in _data(quiet_runtime).get(key).splitlines()]
    assert stored == to_records(body["columns"])


def test_status_handler_given_the_api_gateway_event_answers_the_latest_run(
    quiet_runtime: LocalRuntime, event: Event
) -> None:
    # GIVEN a run that has just started, and API Gateway's event for GET .../runs/latest
    runs = run_store(quiet_runtime.settings)
    rid = run_id(BUCKET, "raw/transactions/status.csv", "etag-1")
    started = datetime.now(UTC)
    runs.start(
        RunInfo(
            run_id=rid,
            bucket=BUCKET,
            key="raw/transactions/status.csv",
            etag="etag-1",
            started=started,
        )
    )
    runs.record(rid, "ingest", 0, {"received": 5})
    # WHEN the status handler gets it
    answer = quiet_runtime.hosts["pipeline_status"].invoke(event("apigw/pipeline_status"))
    # THEN it answers that run's status: still running, 5 rows received
    assert answer["statusCode"] == 200
    body = json.loads(answer["body"])
    assert (body["run"]["run_id"], body["complete"]) == (rid, False)
    assert body["counts"]["received"] == 5


def test_validate_handler_given_a_bad_batch_reports_only_the_bad_messages(
    quiet_runtime: LocalRuntime, event: Event
) -> None:
    # GIVEN a batch of three: a good chunk, a body that is no chunk message, and a chunk whose
    # claim-checked records do not exist
    good = event("sqs/pipeline_validate_batch")["Records"][0]
    garbled = copy.deepcopy(good) | {"messageId": "bad-body", "body": '{"run_id": 7}'}
    missing = copy.deepcopy(good) | {"messageId": "bad-ref"}
    body = json.loads(good["body"])
    missing["body"] = json.dumps(
        {"run_id": body["run_id"], "bucket": BUCKET, "chunk": 9, "ref": "chunks/none/9.json"}
    )
    # WHEN the validate handler gets them
    answer = quiet_runtime.hosts["pipeline_validate"].invoke({"Records": [good, garbled, missing]})
    # THEN only the two bad messages are reported
    assert answer == {
        "batchItemFailures": [{"itemIdentifier": "bad-body"}, {"itemIdentifier": "bad-ref"}]
    }


def test_score_handler_given_the_sqs_batch_sends_scored_rows_to_the_store_queue(
    quiet_runtime: LocalRuntime, event: Event
) -> None:
    # GIVEN the sample SQS batch of the score queue: two transactions of one card, 32 min apart
    aws = event("sqs/pipeline_score_batch")
    body = json.loads(aws["Records"][0]["body"])
    store_queue = runtime_queue(quiet_runtime, "pipeline-store")
    # WHEN the score handler gets it
    answer = quiet_runtime.hosts["pipeline_score"].invoke(aws)
    # THEN no message failed and the chunk went on to the store queue, scored
    assert answer == {"batchItemFailures": []}
    (msg,) = store_queue.receive(10)
    scored = to_records(json.loads(msg.body)["columns"])
    assert [r["transaction_id"] for r in scored] == ["txn-0000", "txn-0001"]
    # ... with the card's online features: the second transaction sees the first one
    assert [(r["txn_count_1h"], r["txn_count_24h"]) for r in scored] == [(0, 0), (1, 1)]
    assert scored[0]["avg_amount_30d"] is None and scored[1]["avg_amount_30d"] == 48.5
    assert all(r["band"] in ("low", "medium", "high") and 0 <= r["score"] <= 1 for r in scored)
    assert all(r["model"]["name"] == "fraud" and len(r["reasons"]) <= 3 for r in scored)
    # AND the run counts the chunk's rows as scored
    recorded = run_store(quiet_runtime.settings).chunks(body["run_id"])
    assert [(c.chunk, c.counts) for c in recorded if c.stage == "score"] == [(0, {"scored": 2})]
