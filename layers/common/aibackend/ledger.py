"""Which events a batch consumer has handled: one read and one write a batch, not two writes an
event.

Powertools' idempotency keeps a record per call: claimed (`INPROGRESS`) before the function
runs, completed after, two conditional writes an event. A consumer that handles a batch of
events at once (EventBridge -> SQS -> batches, `[[queues.events]]`) scores the batch in one
model call and publishes it in one `PutEvents`; per-event records there would cost more than
the work. An `EventLedger` answers "which of these event ids were handled already" in one
read, and records the batch's handled ids in one write, after their effects.

What it promises (the guarantee `[[events]]` consumers with Powertools give, minus the claim):

- a redelivered event that was handled is skipped: it is not published again;
- an event is recorded only after its effects, so a crash in between handles it again on the
  redelivery (at least once, never lost); consumers dedupe on `caused_by`;
- two deliveries of one event *at the same moment* (SQS standard queues rarely do this) can
  both be handled: there is no in-progress claim. The claim is what the per-event records
  bought, at two writes an event.

Entries expire after `ttl_s` (a day by default, as Powertools' records in this project): SQS
keeps a message at most 14 days, but a redelivery comes within the visibility timeout.

Local: a table in the function's idempotency file (`.aib/idempotency/<table>.db`). AWS: items
`handled#<event id>` in the same DynamoDB table as Powertools' records (partition key `id`,
TTL attribute `expiration`), read with BatchGetItem and written with BatchWriteItem.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aibackend.adapters.local import connect, write_transaction
from aibackend.idempotency import LOCAL_DIR
from aibackend.settings import PlatformSettings, physical_name

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

#: How long a handled event is remembered (seconds).
DEFAULT_TTL_S = 86_400
#: DynamoDB's limits: keys a BatchGetItem reads, items a BatchWriteItem writes.
_GET_LIMIT, _WRITE_LIMIT = 100, 25
#: Rounds of retrying what DynamoDB left unprocessed before giving up (then the batch's
#: records are retried by SQS, which handles them again: at least once).
_UNPROCESSED_ROUNDS = 8


class EventLedger(Protocol):
    def handled(self, ids: Sequence[str]) -> set[str]:
        """Those of `ids` recorded and not expired."""
        ...

    def record(self, ids: Sequence[str]) -> None:
        """Remember `ids` as handled (again: a second record of an id renews it)."""
        ...


class SqliteEventLedger:
    """The ledger as a table of one SQLite file, shared by the consumer's worker processes."""

    def __init__(
        self,
        path: Path,
        *,
        ttl_s: int = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path, self.ttl_s, self.clock = path, ttl_s, clock
        self._conn = connect(path)
        self._lock = threading.Lock()
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS handled_events "
            "(id TEXT PRIMARY KEY, expiration INTEGER NOT NULL) WITHOUT ROWID"
        )
        with write_transaction(self._conn, self._lock) as c:
            c.execute("DELETE FROM handled_events WHERE expiration < ?", (int(self.clock()),))

    def handled(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT id FROM handled_events WHERE id IN ({marks}) AND expiration >= ?",
                (*ids, int(self.clock())),
            ).fetchall()
        return {r[0] for r in rows}

    def record(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        expiry = int(self.clock()) + self.ttl_s
        with write_transaction(self._conn, self._lock) as c:
            c.executemany(
                "INSERT OR REPLACE INTO handled_events VALUES (?, ?)", [(i, expiry) for i in ids]
            )

    def close(self) -> None:
        with self._lock:  # never under a statement of another thread (see LocalKeyStore.close)
            self._conn.close()


class DynamoEventLedger:
    """The ledger as `handled#<id>` items of a DynamoDB table (partition key `id`, TTL
    `expiration`): the consumer's Powertools idempotency table."""

    PREFIX = "handled#"

    def __init__(
        self,
        table_name: str,
        *,
        ttl_s: int = DEFAULT_TTL_S,
        client: DynamoDBClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self.table, self.ttl_s, self.clock, self._client = table_name, ttl_s, clock, client

    def handled(self, ids: Sequence[str]) -> set[str]:
        now = int(self.clock())
        out: set[str] = set()
        for start in range(0, len(ids), _GET_LIMIT):
            keys: list[dict[str, Any]] = [
                {"id": {"S": self.PREFIX + i}}
                for i in dict.fromkeys(ids[start : start + _GET_LIMIT])
            ]
            request: dict[str, Any] = {
                self.table: {
                    "Keys": keys,
                    # Names, not words: DynamoDB reserves many words an attribute may be named.
                    "ProjectionExpression": "#id, #expiration",
                    "ExpressionAttributeNames": {"#id": "id", "#expiration": "expiration"},
                }
            }
            for _ in range(_UNPROCESSED_ROUNDS):
                answer = self._client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table, []):
                    # TTL deletes within days, not at once: an expired item is not handled.
                    if int(item["expiration"]["N"]) >= now:
                        out.add(item["id"]["S"].removeprefix(self.PREFIX))
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise RuntimeError(f"DynamoDB left keys of {self.table} unread: {request}")
        return out

    def record(self, ids: Sequence[str]) -> None:
        expiry = str(int(self.clock()) + self.ttl_s)
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _WRITE_LIMIT):
            puts: list[dict[str, Any]] = [
                {
                    "PutRequest": {
                        "Item": {"id": {"S": self.PREFIX + i}, "expiration": {"N": expiry}}
                    }
                }
                for i in unique[start : start + _WRITE_LIMIT]
            ]
            request: dict[str, Any] = {self.table: puts}
            for _ in range(_UNPROCESSED_ROUNDS):
                answer = self._client.batch_write_item(RequestItems=request)
                request = answer.get("UnprocessedItems") or {}
                if not request:
                    break
            else:
                raise RuntimeError(f"DynamoDB left items of {self.table} unwritten: {request}")


def event_ledger(
    settings: PlatformSettings, table: str, *, ttl_s: int = DEFAULT_TTL_S
) -> EventLedger:
    """The ledger of the configured adapter set, in the idempotency table `table`."""
    if settings.adapters == "aws":
        return DynamoEventLedger(physical_name("table", table), ttl_s=ttl_s)
    return SqliteEventLedger(settings.state_dir / LOCAL_DIR / f"{table}.db", ttl_s=ttl_s)
