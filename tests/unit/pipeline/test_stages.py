"""A queue stage that gives up on a chunk records its rows as failed, under its own name."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from aibackend.adapters.local import LocalObjectStore
from aibackend.pipeline.messages import ChunkMessage
from aibackend.pipeline.runs import RunInfo, SqliteRunStore, status
from aibackend.pipeline.stages import QueueStage


def _boom(_message: ChunkMessage) -> None:
    raise RuntimeError("injected scoring failure")


@pytest.mark.parametrize(("receives", "failed"), [("1", 0), ("3", 7)])
def test_the_score_stage_records_a_claim_checked_chunk_as_failed_on_its_last_try(
    tmp_path: Path, receives: str, failed: int
) -> None:
    # GIVEN a run whose chunk 0 has 7 valid rows, sent on to scoring by reference
    runs = SqliteRunStore(tmp_path / "runs.db")
    bucket = LocalObjectStore(tmp_path / "b", bucket="b")

    def stores(name: str) -> LocalObjectStore:
        assert name == "b"
        return bucket

    runs.start(RunInfo(run_id="r1", bucket="b", key="k", etag="e", started=datetime.now(UTC)))
    runs.finish_ingest("r1", rows=8, chunks=1)
    runs.record("r1", "ingest", 0, {"received": 8})
    runs.record("r1", "validate", 0, {"valid": 7, "quarantined": 1})
    message = ChunkMessage(run_id="r1", bucket="b", chunk=0, ref="chunks/r1/valid/0.jsonl")
    record = {
        "body": message.model_dump_json(exclude_none=True),
        "attributes": {"ApproximateReceiveCount": receives},
    }
    # WHEN scoring it fails, on the first and on the last of 3 receives
    with pytest.raises(RuntimeError, match="injected"):
        QueueStage("score", runs, max_receives=3, stores=stores)(record, _boom)
    # THEN only the last try records the chunk's valid rows as failed at the score stage
    s = status(runs, "r1")
    assert s is not None
    assert (s.counts["failed"], s.failed_at["score"], s.counts["scored"]) == (failed, failed, 0)
    assert s.complete is bool(failed)
    # AND a run completed by the failure has its quarantine report, in the run's bucket
    assert [o.key for o in bucket.list("quarantine/")] == (
        ["quarantine/r1/report.json"] if failed else []
    )
