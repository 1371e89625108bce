"""Alert state: deduplication claims and per-key rate counters, in a table.

Locally a SQLite file under the state folder (`aibackend.adapters.local`); on AWS
the DynamoDB table CDK makes from `[resources] tables` (partition key `id`), written with
conditional expressions so that concurrent invocations cannot both win a claim.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

from aibackend.adapters.local import connect, write_transaction
from aibackend.settings import PlatformSettings, physical_name

TABLE = "alerts-state"


class AlertState(Protocol):
    def claim(self, key: str, owner: str, now: float, ttl_s: float) -> bool:
        """Take `key` for `owner` until `now + ttl_s`. True when it was free, expired, or
        already `owner`'s (a retry of the same event keeps its claim)."""
        ...

    def increment(self, key: str, now: float, ttl_s: float) -> int:
        """Add one to the counter `key` (kept until `now + ttl_s`); returns the new value."""
        ...

    def count(self, key: str, now: float) -> int:
        """The counter's value (0 when absent or expired)."""
        ...


def alert_state(settings: PlatformSettings, table: str = TABLE) -> AlertState:
    if settings.adapters == "aws":
        return DynamoAlertState(physical_name("table", table))
    return SqliteAlertState(settings.state_dir / "tables" / f"{table}.db")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
  key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
  key TEXT PRIMARY KEY, n INTEGER NOT NULL, expires REAL NOT NULL
);
"""


class SqliteAlertState:
    """One connection per process (WAL: other processes read and write the file too); each
    write is one `BEGIN IMMEDIATE` transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = connect(path)
        self._lock = threading.Lock()
        self._conn.executescript(_SCHEMA)  # idempotent DDL, committed statement by statement

    def claim(self, key: str, owner: str, now: float, ttl_s: float) -> bool:
        with write_transaction(self._conn, self._lock) as c:
            cur = c.execute(
                "INSERT INTO claims VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                "owner = excluded.owner, expires = excluded.expires "
                "WHERE claims.expires <= ? OR claims.owner = excluded.owner",
                (key, owner, now + ttl_s, now),
            )
            return cur.rowcount == 1

    def increment(self, key: str, now: float, ttl_s: float) -> int:
        with write_transaction(self._conn, self._lock) as c:
            row = c.execute(
                "INSERT INTO counters VALUES (?, 1, ?) ON CONFLICT (key) DO UPDATE SET "
                "n = CASE WHEN counters.expires <= ? THEN 1 ELSE counters.n + 1 END, "
                "expires = CASE WHEN counters.expires <= ? THEN excluded.expires "
                "ELSE counters.expires END RETURNING n",
                (key, now + ttl_s, now, now),
            ).fetchone()
            return int(row[0])

    def count(self, key: str, now: float) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT n FROM counters WHERE key = ? AND expires > ?", (key, now)
            ).fetchone()
        return 0 if row is None else int(row[0])


class DynamoAlertState:
    """Items `{id, owner | n, expiration}`; `expiration` (epoch seconds) is the data tables' TTL
    attribute (infra `DATA_TABLE_TTL`), so DynamoDB removes old items by itself."""

    def __init__(self, table: str, client: Any = None) -> None:
        self.table = table
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self._db = client

    def claim(self, key: str, owner: str, now: float, ttl_s: float) -> bool:
        try:
            self._db.put_item(
                TableName=self.table,
                Item={
                    "id": {"S": f"claim#{key}"},
                    "owner": {"S": owner},
                    "expiration": {"N": str(int(now + ttl_s))},
                },
                ConditionExpression="attribute_not_exists(id) OR expiration <= :now OR #o = :owner",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":now": {"N": str(int(now))}, ":owner": {"S": owner}},
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def increment(self, key: str, now: float, ttl_s: float) -> int:
        item_key = {"id": {"S": f"count#{key}"}}
        try:
            got = self._db.update_item(
                TableName=self.table,
                Key=item_key,
                UpdateExpression="ADD n :one SET expiration = if_not_exists(expiration, :exp)",
                ConditionExpression="attribute_not_exists(id) OR expiration > :now",
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":exp": {"N": str(int(now + ttl_s))},
                    ":now": {"N": str(int(now))},
                },
                ReturnValues="UPDATED_NEW",
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            # Expired: start a new window (a concurrent restart may win; then count on it).
            try:
                self._db.put_item(
                    TableName=self.table,
                    Item={**item_key, "n": {"N": "1"}, "expiration": {"N": str(int(now + ttl_s))}},
                    ConditionExpression="expiration <= :now",
                    ExpressionAttributeValues={":now": {"N": str(int(now))}},
                )
            except self._db.exceptions.ConditionalCheckFailedException:
                return self.increment(key, now, ttl_s)
            return 1
        return int(got["Attributes"]["n"]["N"])

    def count(self, key: str, now: float) -> int:
        got = self._db.get_item(
            TableName=self.table, Key={"id": {"S": f"count#{key}"}}, ConsistentRead=True
        )
        item = got.get("Item")
        if item is None or float(item["expiration"]["N"]) <= now:
            return 0
        return int(item["n"]["N"])
