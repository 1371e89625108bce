"""The run table, one contract for both adapters: SQLite (local) and DynamoDB (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from moto import mock_aws

from aibackend.pipeline.runs import (
    DynamoRunStore,
    RunInfo,
    RunStore,
    SqliteRunStore,
    run_id,
    status,
)
from tests.support import create_data_table

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "dynamodb"])
def runs(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunStore]:
    if request.param == "sqlite":
        yield SqliteRunStore(tmp_path / "runs.db")
        return
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        import boto3

        db = boto3.client("dynamodb")
        create_data_table(db, "runs")
        yield DynamoRunStore("runs", db)


def _run(key: str = "raw/transactions/a.csv", etag: str = "e1", at: datetime = T0) -> RunInfo:
    return RunInfo(run_id=run_id("data", key, etag), bucket="data", key=key, etag=etag, started=at)


def test_the_run_id_follows_the_object_version() -> None:
    # GIVEN / WHEN ids of the same and of other object versions
    same = run_id("data", "raw/a.csv", '"abc"'), run_id("data", "raw/a.csv", "abc")
    # THEN the same version (quoted etag or not) is the same run, another etag another run
    assert same[0] == same[1] != run_id("data", "raw/a.csv", "abd")
    assert len(same[0]) == 24


def test_starting_a_run_twice_keeps_the_first(runs: RunStore) -> None:
    # GIVEN a started run
    first = runs.start(_run())
    # WHEN the same run starts again later
    again = runs.start(_run(at=T0 + timedelta(minutes=5)))
    # THEN the stored run is the first one, and it is the latest
    assert again == first and again.started == T0
    assert runs.latest() == first.run_id


def test_recording_a_chunk_again_does_not_count_it_twice(runs: RunStore) -> None:
    # GIVEN a fully ingested run of two chunks, one of them validated and stored
    run = runs.start(_run())
    runs.finish_ingest(run.run_id, rows=7, chunks=2)
    runs.record(run.run_id, "ingest", 0, {"received": 4})
    runs.record(run.run_id, "ingest", 1, {"received": 3})
    runs.record(run.run_id, "validate", 0, {"valid": 3, "quarantined": 1})
    runs.record(run.run_id, "score", 0, {"scored": 3})
    runs.record(run.run_id, "store", 0, {"stored": 3})
    # WHEN the same chunk is validated, scored and stored again (a redelivery)
    runs.record(run.run_id, "validate", 0, {"valid": 3, "quarantined": 1})
    runs.record(run.run_id, "score", 0, {"scored": 3})
    runs.record(run.run_id, "store", 0, {"stored": 3})
    s = status(runs, run.run_id, now=T0.timestamp() + 10)
    # THEN the totals are those of one delivery, and the run is half done
    assert s is not None
    assert s.counts == {
        "received": 7,
        "valid": 3,
        "quarantined": 1,
        "scored": 3,
        "stored": 3,
        "failed": 0,
    }
    assert (s.chunks_done, s.complete, s.progress) == (1, False, 0.5)


def test_one_chunks_counts_read_alone_match_the_full_list(runs: RunStore) -> None:
    # GIVEN a run whose ingest recorded two chunks and whose validation recorded one
    run = runs.start(_run())
    runs.record(run.run_id, "ingest", 0, {"received": 4})
    runs.record(run.run_id, "ingest", 1, {"received": 3})
    runs.record(run.run_id, "validate", 1, {"valid": 2, "quarantined": 1})
    # WHEN each is read alone (what a stage does for every message it takes)
    alone = [runs.chunk(run.run_id, c.stage, c.chunk) for c in runs.chunks(run.run_id)]
    # THEN each equals its entry in the full list, and what was not recorded is None
    assert alone == runs.chunks(run.run_id)
    second = runs.chunk(run.run_id, "ingest", 1)
    assert second is not None and second.counts == {"received": 3}
    assert runs.chunk(run.run_id, "validate", 0) is None
    assert runs.chunk("no-such-run", "ingest", 0) is None


def test_a_failed_chunk_completes_the_run(runs: RunStore) -> None:
    # GIVEN a run of three chunks: one stored, one given up on by the score stage and one by
    # the store stage
    run = runs.start(_run())
    runs.finish_ingest(run.run_id, rows=3, chunks=3)
    for chunk in (0, 1, 2):
        runs.record(run.run_id, "ingest", chunk, {"received": 1})
        runs.record(run.run_id, "validate", chunk, {"valid": 1, "quarantined": 0})
    runs.record(run.run_id, "score", 0, {"scored": 1})
    runs.record(run.run_id, "store", 0, {"stored": 1})
    runs.record(run.run_id, "score", 1, {"failed": 1})
    runs.record(run.run_id, "score", 2, {"scored": 1})
    runs.record(run.run_id, "store", 2, {"failed": 1})
    # WHEN its status is read
    s = status(runs, run.run_id)
    # THEN it is complete, with the failed rows counted, by the stage that gave up on them
    assert s is not None and s.complete and s.progress == 1.0
    c = s.counts
    assert (c["scored"], c["stored"], c["failed"]) == (2, 1, 2)
    assert s.failed_at == {"ingest": 0, "validate": 0, "score": 1, "store": 1}
    # AND the documented sums hold
    assert c["scored"] + s.failed_at["score"] == c["valid"]
    assert c["stored"] + s.failed_at["store"] == c["scored"]
    assert c["stored"] + c["failed"] == c["valid"]


def test_transaction_ids_are_claimed_by_the_first_chunk(runs: RunStore) -> None:
    # GIVEN chunk 0 of a run claimed two ids
    run = runs.start(_run())
    assert runs.claim_ids(run.run_id, 0, ["t1", "t2"]) == set()
    # WHEN chunk 1 claims one of them and a new one, and chunk 0 claims its ids again
    taken = runs.claim_ids(run.run_id, 1, ["t2", "t3"])
    again = runs.claim_ids(run.run_id, 0, ["t1", "t2"])
    # THEN chunk 1 learns t2 is another chunk's; chunk 0's redelivery finds its own ids free
    assert taken == {"t2"}
    assert again == set()
    # AND another run has its own ids
    other = runs.start(_run(key="raw/transactions/b.csv"))
    assert runs.claim_ids(other.run_id, 5, ["t1"]) == set()


def test_an_unknown_run_has_no_status(runs: RunStore) -> None:
    # GIVEN no runs WHEN an id is looked up THEN there is none, and no latest run
    assert status(runs, "0" * 24) is None
    assert runs.latest() is None


def test_claims_past_one_transactions_worth_find_every_taken_id(runs: RunStore) -> None:
    # GIVEN chunk 0 holds three ids spread over what would be three transactions of 100
    run = runs.start(_run())
    held = ["t5", "t150", "t249"]
    runs.claim_ids(run.run_id, 0, held)
    # WHEN chunk 1 claims 250 ids, those among them
    taken = runs.claim_ids(run.run_id, 1, [f"t{i}" for i in range(250)])
    # THEN exactly those are reported taken, and the rest are chunk 1's now
    assert taken == set(held)
    assert runs.claim_ids(run.run_id, 2, ["t0", "t200"]) == {"t0", "t200"}


def test_the_recent_runs_are_listed_newest_first_and_only_so_many_are_kept(
    runs: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("aibackend.pipeline.runs.RECENT_KEPT", 3)
    # GIVEN no run: nothing to list
    assert runs.recent(10) == []
    # WHEN five files start runs a minute apart (one of them started twice: a redelivery)
    started = [
        runs.start(_run(key=f"raw/transactions/{i}.csv", at=T0 + timedelta(minutes=i)))
        for i in range(5)
    ]
    runs.start(_run(key="raw/transactions/3.csv", at=T0 + timedelta(minutes=9)))
    # THEN the newest three are listed, newest first, each once; a smaller limit cuts it
    newest = [r.run_id for r in reversed(started)][:3]
    assert runs.recent(10) == newest
    assert runs.recent(1) == newest[:1] == [runs.latest()]
