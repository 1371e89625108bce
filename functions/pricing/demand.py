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

import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from aibackend.adapters.local import connect, write_transaction
from aibackend.settings import PlatformSettings, physical_name, platform_settings

TABLE = "pricing-demand"
BUCKET_S = 60
#: How long counters and view markers live: the longest window `PricingSettings` allows.
RETENTION_S = 86_400


def minute(t: float) -> int:
    return int(t // BUCKET_S)


class ItemView(NamedTuple):
    """One `Product Viewed` event to count: the item, the event's id, when."""

    item_id: str
    view_id: str
    at_s: float


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

    def last_prices(self, item_ids: Iterable[str]) -> dict[str, float]:
        """The last price suggested for each of the items that has one."""
        ...

    def set_prices(self, prices: Mapping[str, float]) -> None:
        """Record each price as its item's last suggestion."""
        ...

    def record_and_count(
        self, views: Sequence[ItemView], long_window_s: float, short_window_s: float
    ) -> list[tuple[int, int]]:
        """For each view in order, `record_view`, then its item's `view_counts` over the
        windows ending at the view: a view sees the batch's earlier views, not its later ones,
        as one at a time (one transaction locally)."""
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
        with write_transaction(self._conn, self._lock) as c:
            return self._record(c, ItemView(item_id, view_id, at_s))

    def _record(self, c: sqlite3.Connection, view: ItemView) -> bool:
        added = c.execute("INSERT OR IGNORE INTO item_views VALUES (?, ?, ?)", view).rowcount
        # A view stamped in the future prunes no more than the present would.
        now = min(view.at_s, time.time())
        if self._pruned.get(view.item_id, -1) < minute(now):
            self._pruned[view.item_id] = minute(now)
            # Before the first minute the longest window counts (the one after its `since`'s):
            # no window reads them; DynamoDB's counters and markers expire too.
            c.execute(
                "DELETE FROM item_views WHERE item = ? AND at < ?",
                (view.item_id, (minute(now - RETENTION_S) + 1) * BUCKET_S),
            )
        return bool(added == 1)

    def view_counts(
        self, item_id: str, since_s: float, recent_since_s: float, until_s: float
    ) -> tuple[int, int]:
        with self._lock:
            return self._count(self._conn, item_id, since_s, recent_since_s, until_s)

    @staticmethod
    def _count(
        c: sqlite3.Connection, item_id: str, since_s: float, recent_since_s: float, until_s: float
    ) -> tuple[int, int]:
        # Counted by SQLite on the (item, at) index, between minute boundaries.
        lo, recent_lo, hi = ((minute(t) + 1) * BUCKET_S for t in (since_s, recent_since_s, until_s))
        total, recent = c.execute(
            "SELECT COUNT(*), COALESCE(SUM(at >= ?), 0) FROM item_views "
            "WHERE item = ? AND at >= ? AND at < ?",
            (recent_lo, item_id, lo, hi),
        ).fetchone()
        return int(total), int(recent)

    def record_and_count(
        self, views: Sequence[ItemView], long_window_s: float, short_window_s: float
    ) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        with write_transaction(self._conn, self._lock) as c:
            for v in views:
                self._record(c, v)
                at = v.at_s
                out.append(self._count(c, v.item_id, at - long_window_s, at - short_window_s, at))
        return out

    def last_prices(self, item_ids: Iterable[str]) -> dict[str, float]:
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            return {}
        with self._lock:
            rows = self._conn.execute(
                f"SELECT item, price FROM last_price WHERE item IN ({','.join('?' * len(ids))})",
                ids,
            ).fetchall()
        return {str(item): float(price) for item, price in rows}

    def set_prices(self, prices: Mapping[str, float]) -> None:
        if prices:
            with write_transaction(self._conn, self._lock) as c:
                c.executemany("INSERT OR REPLACE INTO last_price VALUES (?, ?)", prices.items())


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

    def last_prices(self, item_ids: Iterable[str]) -> dict[str, float]:
        keys = [{"id": {"S": f"price#{i}"}} for i in dict.fromkeys(item_ids)]
        out: dict[str, float] = {}
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {
                self.table: {"Keys": keys[start : start + 100], "ConsistentRead": True}
            }
            while pending:
                got = self._db.batch_get_item(RequestItems=pending)
                for item in got.get("Responses", {}).get(self.table, []):
                    out[item["id"]["S"].removeprefix("price#")] = float(item["price"]["N"])
                pending = got.get("UnprocessedKeys") or {}
        return out

    def set_prices(self, prices: Mapping[str, float]) -> None:
        for item_id, price in prices.items():
            self._db.put_item(
                TableName=self.table,
                Item={"id": {"S": f"price#{item_id}"}, "price": {"N": repr(float(price))}},
            )

    def record_and_count(
        self, views: Sequence[ItemView], long_window_s: float, short_window_s: float
    ) -> list[tuple[int, int]]:
        # A conditional transaction per view and a read of its window's counters: in order.
        out: list[tuple[int, int]] = []
        for v in views:
            self.record_view(*v)
            at = v.at_s
            out.append(self.view_counts(v.item_id, at - long_window_s, at - short_window_s, at))
        return out
