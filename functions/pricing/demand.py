"""The pricing function's table: each item's views per minute (a redelivered event counts
once) and the last price suggested for it.

Windows are whole minutes: `view_counts(item, since, recent_since, until)` counts the views
of the minutes after `since`'s minute up to and including `until`'s (and of those after
`recent_since`'s), the same in both topologies.

Locally SQLite under the state folder, one row per view; a product's rows older than
`RETENTION_S` (no window reads them) are deleted when it is next viewed, at most once a
minute per product. On AWS the DynamoDB table CDK makes
from `[resources] tables`: a counter item per product and minute (`views#<item>#<minute>`,
`n` added to atomically) and a marker per counted view (`view#<item>#<event id>`), written in
one transaction whose condition refuses a marker that exists, so a redelivery adds nothing;
both expire after `RETENTION_S`. The last price is in `price#<item>`. Reading a window is one
`BatchGetItem` of its minutes' counters (61 small items for an hour), whatever the traffic.
It used to be one attribute per view on a five-minute item: an item grew with its product's
traffic, every view read all of them, and a product viewed ~7,000 times in five minutes
passed DynamoDB's 400 KB item limit, after which its views failed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Protocol

from aibackend.adapters.local import connect, write_transaction
from aibackend.settings import PlatformSettings, physical_name, platform_settings

TABLE = "pricing-demand"
BUCKET_S = 60
#: How long counters and view markers live: the longest window `PricingSettings` allows.
RETENTION_S = 86_400


def minute(t: float) -> int:
    return int(t // BUCKET_S)


class DemandStore(Protocol):
    def record_view(self, item_id: str, view_id: str, at_s: float) -> bool:
        """Count one view of the item at `at_s`; False when `view_id` was counted before."""
        ...

    def view_counts(
        self, item_id: str, since_s: float, recent_since_s: float, until_s: float
    ) -> tuple[int, int]:
        """Views of the item in the minutes after `since_s`'s up to `until_s`'s, and how many
        of those in the minutes after `recent_since_s`'s."""
        ...

    def swap_price(self, item_id: str, price: float) -> float | None:
        """Record `price` as the item's last suggestion; return the previous one."""
        ...


def demand_store(settings: PlatformSettings | None = None) -> DemandStore:
    s = settings or platform_settings()
    if s.adapters == "aws":
        return DynamoDemandStore(physical_name("table", TABLE))
    return SqliteDemandStore(s.state_dir / "tables" / f"{TABLE}.db")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS item_views (
  item TEXT NOT NULL, view TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (item, view)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS item_views_at ON item_views (item, at);
CREATE TABLE IF NOT EXISTS last_price (item TEXT PRIMARY KEY, price REAL NOT NULL);
"""


class SqliteDemandStore:
    def __init__(self, path: Path) -> None:
        self._conn = connect(path)
        self._conn.row_factory = None
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()
        #: Per product, the minute its old rows were last deleted.
        self._pruned: dict[str, int] = {}

    def record_view(self, item_id: str, view_id: str, at_s: float) -> bool:
        # A view stamped in the future prunes no more than the present would.
        now = min(at_s, time.time())
        with write_transaction(self._conn, self._lock) as c:
            added = c.execute(
                "INSERT OR IGNORE INTO item_views VALUES (?, ?, ?)", (item_id, view_id, at_s)
            ).rowcount
            this_minute = minute(now)
            if self._pruned.get(item_id, -1) < this_minute:
                self._pruned[item_id] = this_minute
                # Before the first minute the longest window counts (the one after its
                # `since`'s): no window reads them; DynamoDB's counters and markers expire too.
                c.execute(
                    "DELETE FROM item_views WHERE item = ? AND at < ?",
                    (item_id, (minute(now - RETENTION_S) + 1) * BUCKET_S),
                )
        return added == 1

    def view_counts(
        self, item_id: str, since_s: float, recent_since_s: float, until_s: float
    ) -> tuple[int, int]:
        # Counted by SQLite on the (item, at) index, between minute boundaries.
        lo, recent_lo, hi = ((minute(t) + 1) * BUCKET_S for t in (since_s, recent_since_s, until_s))
        with self._lock:
            total, recent = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(at >= ?), 0) FROM item_views "
                "WHERE item = ? AND at >= ? AND at < ?",
                (recent_lo, item_id, lo, hi),
            ).fetchone()
        return int(total), int(recent)

    def swap_price(self, item_id: str, price: float) -> float | None:
        with write_transaction(self._conn, self._lock) as c:
            row = c.execute("SELECT price FROM last_price WHERE item = ?", (item_id,)).fetchone()
            c.execute("INSERT OR REPLACE INTO last_price VALUES (?, ?)", (item_id, price))
        return None if row is None else float(row[0])


class DynamoDemandStore:
    def __init__(self, table: str, client: Any = None) -> None:
        self.table = table
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self._db = client

    def record_view(self, item_id: str, view_id: str, at_s: float) -> bool:
        m = minute(at_s)
        expires = {"N": str((m + 1) * BUCKET_S + RETENTION_S)}
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": {
                                "id": {"S": f"view#{item_id}#{view_id}"},
                                "expiration": expires,
                            },
                            "ConditionExpression": "attribute_not_exists(id)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": {"id": {"S": f"views#{item_id}#{m}"}},
                            "UpdateExpression": "ADD #n :one SET #e = :e",
                            "ExpressionAttributeNames": {"#n": "n", "#e": "expiration"},
                            "ExpressionAttributeValues": {":one": {"N": "1"}, ":e": expires},
                        }
                    },
                ]
            )
        except self._db.exceptions.TransactionCanceledException as e:
            reasons = e.response.get("CancellationReasons", [])
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return False  # this view was counted before
            raise
        return True

    def view_counts(
        self, item_id: str, since_s: float, recent_since_s: float, until_s: float
    ) -> tuple[int, int]:
        minutes = range(minute(since_s) + 1, minute(until_s) + 1)
        recent_from = minute(recent_since_s) + 1
        keys = [{"id": {"S": f"views#{item_id}#{m}"}} for m in minutes]
        total = recent = 0
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {
                self.table: {
                    "Keys": keys[start : start + 100],
                    "ConsistentRead": True,
                    "ProjectionExpression": "id, #n",
                    "ExpressionAttributeNames": {"#n": "n"},
                }
            }
            while pending:
                got = self._db.batch_get_item(RequestItems=pending)
                for item in got.get("Responses", {}).get(self.table, []):
                    n = int(item.get("n", {"N": "0"})["N"])
                    total += n
                    if int(item["id"]["S"].rsplit("#", 1)[1]) >= recent_from:
                        recent += n
                pending = got.get("UnprocessedKeys") or {}
        return total, recent

    def swap_price(self, item_id: str, price: float) -> float | None:
        got = self._db.update_item(
            TableName=self.table,
            Key={"id": {"S": f"price#{item_id}"}},
            UpdateExpression="SET #p = :p",
            ExpressionAttributeNames={"#p": "price"},
            ExpressionAttributeValues={":p": {"N": repr(float(price))}},
            ReturnValues="UPDATED_OLD",
        )
        old = got.get("Attributes", {}).get("price")
        return None if old is None else float(old["N"])
