"""The run table: one run per source file, with counts per chunk and stage.

A run's id derives from bucket, key and etag, so uploading the same bytes again is the same
run. Every stage records what it did to a chunk as a whole (`record(run, stage, chunk, counts)`,
an overwrite), and the status sums those: a redelivered chunk writes the same counts again and
nothing is counted twice. Locally the table is a SQLite file under the state folder; on AWS
the DynamoDB table CDK makes from `[resources] tables` (partition key `id`).

Completion: `record` and `finish_ingest` answer the run's `Progress` (chunks with an outcome,
out of how many), read in the same write, so whichever call accounts for the last chunk sees
the run complete; `complete(run, completion)` is a conditional write (an insert that keeps an
existing row, a DynamoDB condition) that exactly one caller wins (`pipeline.completion`).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from aibackend.adapters.local import connect, write_transaction
from aibackend.settings import PlatformSettings, physical_name, platform_settings

TABLE = "pipeline-runs"
Stage = Literal["ingest", "validate", "score", "store"]
STAGES: tuple[Stage, ...] = ("ingest", "validate", "score", "store")
#: Counts a stage records per chunk: ingest `received`; validate `valid` and `quarantined`;
#: score `scored`; store `stored`; any stage `failed` (rows of a chunk it gave up on).
#:
#: Totals add up as `valid + quarantined = received` and `stored + failed = valid`; per stage
#: (`failed_at`), `scored + failed_at["score"] = valid` and `stored + failed_at["store"] = scored`.
COUNTS = ("received", "valid", "quarantined", "scored", "stored", "failed")
#: Items in one DynamoDB transaction, at most.
_TRANSACTION_ITEMS = 100
#: How long transaction-id claims (duplicate detection across a run's chunks) are kept.
CLAIM_TTL_S = 14 * 86_400


def run_id(bucket: str, key: str, etag: str) -> str:
    """Deterministic id of the run of one version of one object."""
    digest = hashlib.sha256(f"{bucket}\0{key}\0{etag.strip(chr(34))}".encode()).hexdigest()
    return digest[:24]


class RunFailure(BaseModel):
    """Why a run's file could not be read through: what a person fixes before uploading again."""

    model_config = ConfigDict(frozen=True)

    stage: Stage = "ingest"
    reason: str
    #: False: the file itself is wrong (format, header, a broken line, corrupt gzip), recorded
    #: on the first try; True: the object store failed, recorded on the last of `attempts`.
    retryable: bool
    attempts: int = Field(ge=1)


class RunInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    bucket: str
    key: str
    etag: str
    started: datetime
    #: Set once ingest has read the whole file.
    rows: int | None = None
    chunks: int | None = None
    #: Set when ingest gave up: `rows` and `chunks` then count what it sent before.
    failure: RunFailure | None = None


class Completion(BaseModel):
    """When a run became complete (every chunk accounted for), how, and its quarantine report."""

    model_config = ConfigDict(frozen=True)

    completed_at: datetime
    state: Literal["succeeded", "failed"]
    report_key: str


@dataclass(frozen=True)
class Progress:
    """Chunks with an outcome, out of `chunks` (None until ingest has read the whole file)."""

    chunks_done: int
    chunks: int | None

    @property
    def complete(self) -> bool:
        return self.chunks is not None and self.chunks_done >= self.chunks


class ChunkCounts(BaseModel):
    model_config = ConfigDict(frozen=True)

    stage: Stage
    chunk: int
    counts: dict[str, int]
    at: float


class RunStatus(BaseModel):
    """What `aib pipeline status` and `GET /v1/pipeline/runs/{id}` show."""

    model_config = ConfigDict(frozen=True)

    run: RunInfo
    counts: dict[str, int]
    #: `failed` by the stage that gave up on the rows.
    failed_at: dict[str, int]
    chunks_done: int
    complete: bool
    progress: float
    elapsed_s: float
    #: `running` until completed; `failed` when ingest gave up on the file (`run.failure`).
    state: Literal["running", "succeeded", "failed"] = "running"
    completed_at: datetime | None = None
    #: `quarantine/<run>/report.json` in the run's bucket, once completed.
    report_key: str | None = None

    @classmethod
    def of(
        cls,
        run: RunInfo,
        chunks: Iterable[ChunkCounts],
        now: float,
        completion: Completion | None = None,
    ) -> RunStatus:
        recorded = list(chunks)
        totals = dict.fromkeys(COUNTS, 0)
        failed_at = dict.fromkeys(STAGES, 0)
        for c in recorded:
            for name, n in c.counts.items():
                totals[name] = totals.get(name, 0) + n
            failed_at[c.stage] += c.counts.get("failed", 0)
        done = _done_chunks(recorded)
        complete = run.chunks is not None and len(done) >= run.chunks
        total = run.chunks or 0
        last = max((c.at for c in recorded), default=run.started.timestamp())
        end = last if complete else now
        return cls(
            run=run,
            counts=totals,
            failed_at=failed_at,
            chunks_done=len(done),
            complete=complete,
            progress=1.0 if complete else (len(done) / total if total else 0.0),
            elapsed_s=round(max(0.0, end - run.started.timestamp()), 3),
            state="running" if completion is None else completion.state,
            completed_at=None if completion is None else completion.completed_at,
            report_key=None if completion is None else completion.report_key,
        )


def chunk_done(stage: Stage, counts: Mapping[str, int]) -> bool:
    """Whether this record gives its chunk an outcome: stored, failed at some stage, or
    validated with nothing valid."""
    failed = counts.get("failed", 0) > 0
    nothing_valid = stage == "validate" and counts.get("valid", 0) == 0
    return stage == "store" or failed or nothing_valid


def _done_chunks(recorded: list[ChunkCounts]) -> set[int]:
    return {c.chunk for c in recorded if chunk_done(c.stage, c.counts)}


#: How many recently started runs a store lists (`aib pipeline runs`).
RECENT_KEPT = 100


class RunStore(Protocol):
    def start(self, run: RunInfo) -> RunInfo:
        """Record a run (kept as it is when it exists); returns the stored run."""
        ...

    def finish_ingest(
        self, run_id: str, *, rows: int, chunks: int, failure: RunFailure | None = None
    ) -> Progress:
        """Record how many rows and chunks ingest sent (and why it stopped, when it failed)."""
        ...

    def record(
        self, run_id: str, stage: Stage, chunk: int, counts: Mapping[str, int]
    ) -> Progress | None:
        """Set (not add) what `stage` did to `chunk`; the run's progress when this gives the
        chunk an outcome (`chunk_done`), else None (such a write cannot complete the run)."""
        ...

    def complete(self, run_id: str, completion: Completion) -> bool:
        """Mark the run completed unless it already is; True for the one caller that did."""
        ...

    def completion(self, run_id: str) -> Completion | None: ...

    def count_attempt(self, run_id: str) -> int:
        """Count one more ingest attempt of the run; returns the attempts so far, this one
        included (asynchronous invocation says nothing of its retries)."""
        ...

    def claim_ids(self, run_id: str, chunk: int, ids: list[str]) -> set[str]:
        """Claim transaction ids for `chunk`; returns those another chunk of the run holds."""
        ...

    def get(self, run_id: str) -> RunInfo | None: ...

    def chunks(self, run_id: str) -> list[ChunkCounts]: ...

    def chunk(self, run_id: str, stage: Stage, chunk: int) -> ChunkCounts | None:
        """What `stage` recorded of one chunk (a stage's messages ask per chunk: reading
        every chunk's counts each time made a run quadratic in its chunks)."""
        ...

    def latest(self) -> str | None:
        """The most recently started run's id."""
        ...

    def recent(self, limit: int) -> list[str]:
        """The ids of the last `limit` runs started (at most `RECENT_KEPT`), newest first."""
        ...


def status(store: RunStore, run_id: str, now: float | None = None) -> RunStatus | None:
    run = store.get(run_id)
    if run is None:
        return None
    at = time.time() if now is None else now
    return RunStatus.of(run, store.chunks(run_id), at, store.completion(run_id))


def run_store(settings: PlatformSettings | None = None, table: str = TABLE) -> RunStore:
    s = settings or platform_settings()
    if s.adapters == "aws":
        return DynamoRunStore(physical_name("table", table))
    return SqliteRunStore(s.state_dir / "tables" / f"{table}.db")


# --- local: SQLite ----------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, info TEXT NOT NULL, started REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunk_counts (
  run_id TEXT NOT NULL, stage TEXT NOT NULL, chunk INTEGER NOT NULL,
  counts TEXT NOT NULL, at REAL NOT NULL,
  PRIMARY KEY (run_id, stage, chunk)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS claims (
  run_id TEXT NOT NULL, txn TEXT NOT NULL, chunk INTEGER NOT NULL,
  PRIMARY KEY (run_id, txn)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS done_chunks (
  run_id TEXT NOT NULL, chunk INTEGER NOT NULL, PRIMARY KEY (run_id, chunk)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS completions (
  run_id TEXT PRIMARY KEY, completion TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ingest_attempts (
  run_id TEXT PRIMARY KEY, n INTEGER NOT NULL
);
"""


class SqliteRunStore:
    """One connection for the store's life, shared by threads under a lock (as the feature
    table does): every stage records each chunk here, several times, and a fresh connection a
    call (~0.1 ms to open, and an empty page cache) cost more than the statements did. Other
    processes open their own; SQLite's WAL locking keeps them consistent."""

    def __init__(self, path: Any) -> None:
        self.path = path
        self._conn = connect(path)
        self._lock = threading.Lock()
        with self._read() as c:
            c.executescript(_SCHEMA)

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: a read then a write inside is atomic)."""
        return write_transaction(self._conn, self._lock)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    def start(self, run: RunInfo) -> RunInfo:
        with self._write() as c:
            c.execute(
                "INSERT OR IGNORE INTO runs (run_id, info, started) VALUES (?, ?, ?)",
                (run.run_id, run.model_dump_json(), run.started.timestamp()),
            )
        stored = self.get(run.run_id)
        assert stored is not None
        return stored

    def finish_ingest(
        self, run_id: str, *, rows: int, chunks: int, failure: RunFailure | None = None
    ) -> Progress:
        run = self.get(run_id)
        if run is None:
            raise KeyError(f"run {run_id} was never started")
        done = run.model_copy(update={"rows": rows, "chunks": chunks, "failure": failure})
        with self._write() as c:
            c.execute("UPDATE runs SET info = ? WHERE run_id = ?", (done.model_dump_json(), run_id))
            return self._progress(c, run_id)

    def record(
        self, run_id: str, stage: Stage, chunk: int, counts: Mapping[str, int]
    ) -> Progress | None:
        with self._write() as c:
            c.execute(
                "INSERT OR REPLACE INTO chunk_counts VALUES (?, ?, ?, ?, ?)",
                (run_id, stage, chunk, json.dumps(dict(counts)), time.time()),
            )
            if not chunk_done(stage, counts):
                return None
            c.execute("INSERT OR IGNORE INTO done_chunks VALUES (?, ?)", (run_id, chunk))
            return self._progress(c, run_id)

    @staticmethod
    def _progress(c: sqlite3.Connection, run_id: str) -> Progress:
        """Read inside the writing transaction: of two writers the later sees both writes."""
        (done,) = c.execute(
            "SELECT COUNT(*) FROM done_chunks WHERE run_id = ?", (run_id,)
        ).fetchone()
        row = c.execute(
            "SELECT json_extract(info, '$.chunks') FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return Progress(chunks_done=done, chunks=None if row is None else row[0])

    def complete(self, run_id: str, completion: Completion) -> bool:
        with self._write() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO completions VALUES (?, ?)",
                (run_id, completion.model_dump_json()),
            )
            return cur.rowcount == 1

    def completion(self, run_id: str) -> Completion | None:
        with self._read() as c:
            row = c.execute(
                "SELECT completion FROM completions WHERE run_id = ?", (run_id,)
            ).fetchone()
        return None if row is None else Completion.model_validate_json(row[0])

    def count_attempt(self, run_id: str) -> int:
        with self._write() as c:
            (n,) = c.execute(
                "INSERT INTO ingest_attempts VALUES (?, 1) "
                "ON CONFLICT (run_id) DO UPDATE SET n = n + 1 RETURNING n",
                (run_id,),
            ).fetchone()
        return int(n)

    def claim_ids(self, run_id: str, chunk: int, ids: list[str]) -> set[str]:
        with self._write() as c:
            c.executemany(
                "INSERT OR IGNORE INTO claims VALUES (?, ?, ?)",
                ((run_id, i, chunk) for i in ids),
            )
            taken: set[str] = set()
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ",".join("?" * len(part))
                taken.update(
                    row[0]
                    for row in c.execute(
                        f"SELECT txn FROM claims WHERE run_id = ? AND chunk != ? "
                        f"AND txn IN ({marks})",
                        (run_id, chunk, *part),
                    )
                )
        return taken

    def get(self, run_id: str) -> RunInfo | None:
        with self._read() as c:
            row = c.execute("SELECT info FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else RunInfo.model_validate_json(row[0])

    def chunks(self, run_id: str) -> list[ChunkCounts]:
        with self._read() as c:
            rows = c.execute(
                "SELECT stage, chunk, counts, at FROM chunk_counts WHERE run_id = ?", (run_id,)
            ).fetchall()
        return [ChunkCounts(stage=r[0], chunk=r[1], counts=json.loads(r[2]), at=r[3]) for r in rows]

    def chunk(self, run_id: str, stage: Stage, chunk: int) -> ChunkCounts | None:
        with self._read() as c:
            row = c.execute(
                "SELECT counts, at FROM chunk_counts WHERE run_id = ? AND stage = ? AND chunk = ?",
                (run_id, stage, chunk),
            ).fetchone()
        if row is None:
            return None
        return ChunkCounts(stage=stage, chunk=chunk, counts=json.loads(row[0]), at=row[1])

    def latest(self) -> str | None:
        found = self.recent(1)
        return found[0] if found else None

    def recent(self, limit: int) -> list[str]:
        with self._read() as c:
            rows = c.execute(
                "SELECT run_id FROM runs ORDER BY started DESC LIMIT ?", (min(limit, RECENT_KEPT),)
            ).fetchall()
        return [str(r[0]) for r in rows]


# --- AWS: DynamoDB ------------------------------------------------------------------------------


class DynamoRunStore:
    """Items keyed by `id`: `run#<run>` (the run, plus one `c#<stage>#<chunk>` attribute per
    recorded chunk, each an overwrite; `done`, a number set of the chunks with an outcome plus,
    once ingest has finished, the marker `-1 - chunks`, so that the one attribute an update
    returns carries both halves of the run's progress; `completed`, set once by a conditional
    write; `ingest_attempts`), `latest` (the last started run, and `recent`: the ids of the
    last `RECENT_KEPT` started, newest first) and `txn#<run>#<id>`
    (transaction-id claims, expiring after `CLAIM_TTL_S`)."""

    def __init__(self, table: str, client: Any = None) -> None:
        self.table = table
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self._db = client

    def start(self, run: RunInfo) -> RunInfo:
        try:
            self._db.put_item(
                TableName=self.table,
                Item={"id": {"S": f"run#{run.run_id}"}, "info": {"S": run.model_dump_json()}},
                ConditionExpression="attribute_not_exists(id)",
            )
            # `latest` also keeps the ids of the runs started before it, newest first.
            got = self._db.update_item(
                TableName=self.table,
                Key={"id": {"S": "latest"}},
                UpdateExpression="SET run_id = :r, "
                "recent = list_append(:one, if_not_exists(recent, :none))",
                ExpressionAttributeValues={
                    ":r": {"S": run.run_id},
                    ":one": {"L": [{"S": run.run_id}]},
                    ":none": {"L": []},
                },
                ReturnValues="UPDATED_NEW",
            )
            kept = len(got["Attributes"]["recent"]["L"])
            if kept > RECENT_KEPT:  # the oldest go; a start in between only shifts them on
                extra = ", ".join(f"recent[{i}]" for i in range(RECENT_KEPT, kept))
                self._db.update_item(
                    TableName=self.table,
                    Key={"id": {"S": "latest"}},
                    UpdateExpression=f"REMOVE {extra}",
                )
        except self._db.exceptions.ConditionalCheckFailedException:
            pass
        stored = self.get(run.run_id)
        assert stored is not None
        return stored

    def finish_ingest(
        self, run_id: str, *, rows: int, chunks: int, failure: RunFailure | None = None
    ) -> Progress:
        run = self.get(run_id)
        if run is None:
            raise KeyError(f"run {run_id} was never started")
        done = run.model_copy(update={"rows": rows, "chunks": chunks, "failure": failure})
        got = self._db.update_item(
            TableName=self.table,
            Key={"id": {"S": f"run#{run_id}"}},
            UpdateExpression="SET info = :i ADD done :n",
            ExpressionAttributeValues={
                ":i": {"S": done.model_dump_json()},
                ":n": {"NS": [str(-1 - chunks)]},
            },
            ReturnValues="UPDATED_NEW",
        )
        return _progress(got["Attributes"])

    def record(
        self, run_id: str, stage: Stage, chunk: int, counts: Mapping[str, int]
    ) -> Progress | None:
        """One update: the chunk's counts and, when this gives the chunk an outcome, the chunk
        into `done`, returning the two attributes progress needs (`UPDATED_NEW`, not the item)."""
        key = {"id": {"S": f"run#{run_id}"}}
        names = {"#c": f"c#{stage}#{chunk}"}
        value = {"S": json.dumps({"counts": dict(counts), "at": time.time()})}
        if not chunk_done(stage, counts):
            self._db.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET #c = :v",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":v": value},
            )
            return None
        got = self._db.update_item(
            TableName=self.table,
            Key=key,
            UpdateExpression="SET #c = :v ADD done :n",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={":v": value, ":n": {"NS": [str(chunk)]}},
            ReturnValues="UPDATED_NEW",
        )
        return _progress(got["Attributes"])

    def complete(self, run_id: str, completion: Completion) -> bool:
        try:
            self._db.update_item(
                TableName=self.table,
                Key={"id": {"S": f"run#{run_id}"}},
                UpdateExpression="SET completed = :c",
                ConditionExpression="attribute_not_exists(completed)",
                ExpressionAttributeValues={":c": {"S": completion.model_dump_json()}},
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def completion(self, run_id: str) -> Completion | None:
        item = self._item(f"run#{run_id}") or {}
        done = item.get("completed")
        return None if done is None else Completion.model_validate_json(done["S"])

    def count_attempt(self, run_id: str) -> int:
        got = self._db.update_item(
            TableName=self.table,
            Key={"id": {"S": f"run#{run_id}"}},
            UpdateExpression="ADD ingest_attempts :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        return int(got["Attributes"]["ingest_attempts"]["N"])

    def claim_ids(self, run_id: str, chunk: int, ids: list[str]) -> set[str]:
        """Conditional puts, 100 to a transaction (DynamoDB's limit). A transaction that one
        taken id cancels says which (`ConditionalCheckFailed`); the others go again."""
        taken: set[str] = set()
        expires = str(int(time.time()) + CLAIM_TTL_S)
        for start in range(0, len(ids), _TRANSACTION_ITEMS):
            pending = ids[start : start + _TRANSACTION_ITEMS]
            while pending:
                failed = self._claim(run_id, chunk, pending, expires)
                taken.update(failed)
                pending = [] if not failed else [i for i in pending if i not in failed]
        return taken

    def _claim(self, run_id: str, chunk: int, ids: list[str], expires: str) -> set[str]:
        """Claim `ids` in one transaction; returns the ids that cancelled it (none: done)."""
        puts = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {
                        "id": {"S": f"txn#{run_id}#{txn}"},
                        "chunk": {"N": str(chunk)},
                        "expiration": {"N": expires},
                    },
                    "ConditionExpression": "attribute_not_exists(id) OR chunk = :c",
                    "ExpressionAttributeValues": {":c": {"N": str(chunk)}},
                }
            }
            for txn in ids
        ]
        try:
            self._db.transact_write_items(TransactItems=puts)
        except self._db.exceptions.TransactionCanceledException as e:
            reasons = e.response.get("CancellationReasons", [])
            failed = {
                txn
                for txn, r in zip(ids, reasons, strict=False)
                if r.get("Code") == "ConditionalCheckFailed"
            }
            if not failed:
                raise  # cancelled for another reason (a conflict, throttling): retry the chunk
            return failed
        return set()

    def _item(self, key: str) -> dict[str, Any] | None:
        got = self._db.get_item(TableName=self.table, Key={"id": {"S": key}}, ConsistentRead=True)
        item: dict[str, Any] | None = got.get("Item")
        return item

    def get(self, run_id: str) -> RunInfo | None:
        item = self._item(f"run#{run_id}")
        return None if item is None else RunInfo.model_validate_json(item["info"]["S"])

    def chunks(self, run_id: str) -> list[ChunkCounts]:
        item = self._item(f"run#{run_id}") or {}
        out: list[ChunkCounts] = []
        for name, value in item.items():
            if name.startswith("c#"):
                _, stage, chunk = name.split("#")
                data = json.loads(value["S"])
                out.append(
                    ChunkCounts(stage=stage, chunk=int(chunk), counts=data["counts"], at=data["at"])
                )
        return out

    def chunk(self, run_id: str, stage: Stage, chunk: int) -> ChunkCounts | None:
        got = self._db.get_item(
            TableName=self.table,
            Key={"id": {"S": f"run#{run_id}"}},
            ConsistentRead=True,
            ProjectionExpression="#c",
            ExpressionAttributeNames={"#c": f"c#{stage}#{chunk}"},
        )
        value = got.get("Item", {}).get(f"c#{stage}#{chunk}")
        if value is None:
            return None
        data = json.loads(value["S"])
        return ChunkCounts(stage=stage, chunk=chunk, counts=data["counts"], at=data["at"])

    def latest(self) -> str | None:
        item = self._item("latest")
        return None if item is None else str(item["run_id"]["S"])

    def recent(self, limit: int) -> list[str]:
        item = self._item("latest")
        if item is None:
            return []
        # A table written before the list was kept knows its latest run only.
        ids = [v["S"] for v in item.get("recent", {}).get("L", [])] or [item["run_id"]["S"]]
        return ids[: min(limit, RECENT_KEPT)]


def _progress(item: Mapping[str, Any]) -> Progress:
    """From the `done` number set: chunks (>= 0) and the marker `-1 - chunks` (< 0)."""
    members = [int(v) for v in item.get("done", {}).get("NS", [])]
    markers = [-1 - v for v in members if v < 0]
    chunks = max(markers) if markers else None
    return Progress(chunks_done=sum(v >= 0 for v in members), chunks=chunks)


def utcnow() -> datetime:
    return datetime.now(UTC)
