"""The pricing function's table: each item's views (by event id, so a redelivered event
counts once) and the last price suggested for it.

Locally SQLite under the state folder; on AWS the DynamoDB table CDK makes from
`[resources] tables`: one item per product and 5-minute bucket (`views#<item>#<bucket>`), one
attribute per view (`v#<event id>` = epoch s), expiring after the long window; the last
price in `price#<item>`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

from aibackend.adapters.local import connect, write_transaction
from aibackend.settings import PlatformSettings, physical_name, platform_settings

TABLE = "pricing-demand"
BUCKET_S = 300


class DemandStore(Protocol):
    def record_view(self, item_id: str, view_id: str, at_s: float) -> None: ...

    def views_since(self, item_id: str, since_s: float, until_s: float) -> list[float]:
        """View times of the item in `(since_s, until_s]`."""
        ...

    def view_counts(
        self, item_id: str, since_s: float, recent_since_s: float, until_s: float
    ) -> tuple[int, int]:
        """How many views of the item fall in `(since_s, until_s]`, and how many of those in
        `(recent_since_s, until_s]`."""
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

    def record_view(self, item_id: str, view_id: str, at_s: float) -> None:
        with write_transaction(self._conn, self._lock) as c:
            c.execute(
                "INSERT OR REPLACE INTO item_views VALUES (?, ?, ?)", (item_id, view_id, at_s)
            )

    def views_since(self, item_id: str, since_s: float, until_s: float) -> list[float]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT at FROM item_views WHERE item = ? AND at > ? AND at <= ?",
                (item_id, since_s, until_s),
            ).fetchall()
        return [float(r[0]) for r in rows]

    def view_counts(
        self, item_id: str, since_s: float, recent_since_s: float, until_s: float
    ) -> tuple[int, int]:
        # Counted by SQLite on the (item, at) index: a popular item's hour of views is not
        # read into Python on every view.
        with self._lock:
            total, recent = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(at > ?), 0) FROM item_views "
                "WHERE item = ? AND at > ? AND at <= ?",
                (recent_since_s, item_id, since_s, until_s),
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

    def record_view(self, item_id: str, view_id: str, at_s: float) -> None:
        bucket = int(at_s // BUCKET_S)
        self._db.update_item(
            TableName=self.table,
            Key={"id": {"S": f"views#{item_id}#{bucket}"}},
            UpdateExpression="SET #v = :at, #e = :e",
            ExpressionAttributeNames={"#e": "expiration", "#v": f"v#{view_id}"},
            ExpressionAttributeValues={
                ":at": {"N": repr(float(at_s))},
                ":e": {"N": str((bucket + 1) * BUCKET_S + 86_400)},
            },
        )

    def views_since(self, item_id: str, since_s: float, until_s: float) -> list[float]:
        buckets = range(int(since_s // BUCKET_S), int(until_s // BUCKET_S) + 1)
        keys = [{"id": {"S": f"views#{item_id}#{b}"}} for b in buckets]
        out: list[float] = []
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {
                self.table: {"Keys": keys[start : start + 100], "ConsistentRead": True}
            }
            while pending:
                got = self._db.batch_get_item(RequestItems=pending)
                for item in got.get("Responses", {}).get(self.table, []):
                    out += [
                        float(v["N"])
                        for name, v in item.items()
                        if name.startswith("v#") and since_s < float(v["N"]) <= until_s
                    ]
                pending = got.get("UnprocessedKeys") or {}
        return out

    def view_counts(
        self, item_id: str, since_s: float, recent_since_s: float, until_s: float
    ) -> tuple[int, int]:
        seen = self.views_since(item_id, since_s, until_s)
        return len(seen), sum(1 for t in seen if t > recent_since_s)

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
