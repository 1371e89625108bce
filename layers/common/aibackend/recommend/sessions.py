"""Live session profiles: what a session viewed, decayed, for the next recommendation.

`Product Viewed` events (`functions/shop_events`) record each view keyed by (session, event
id): a redelivered event rewrites its own entry. A session's profile weighs each item by its
views, each counting `0.5 ** (age / HALF_LIFE_S)`; items whose weight fell under
`MIN_WEIGHT` (a single view about two hours old) drop out, and at most `MAX_PROFILE_ITEMS`
of the heaviest are kept, strongest last (the recommender's "most recent last"). The
recommendation service reads it on `GET /v1/recommendations/{user_id}?session=<id>`.

Locally a SQLite file under the state folder; on AWS the DynamoDB table CDK makes from
`[resources] tables`: one item per session (`session#<id>`), one attribute per view
(`v#<event id>` = `[item, epoch s]`), expiring a day after its last view.
"""

from __future__ import annotations

import json
import math
import threading
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from aibackend.adapters.local import connect, write_transaction
from aibackend.settings import PlatformSettings, physical_name, platform_settings

TABLE = "recommend-sessions"
HALF_LIFE_S = 1_800.0
MIN_WEIGHT = 0.06
MAX_PROFILE_ITEMS = 50
RETAIN_S = 86_400

View = tuple[str, float]  # (item id, viewed at: epoch seconds)


def profile(views: Iterable[View], now_s: float) -> list[str]:
    """The profile's items, lightest first, from the session's views."""
    weight: dict[str, float] = defaultdict(float)
    for item, at in views:
        weight[item] += math.pow(0.5, max(0.0, now_s - at) / HALF_LIFE_S)
    kept = sorted((w, item) for item, w in weight.items() if w >= MIN_WEIGHT)
    return [item for _, item in kept[-MAX_PROFILE_ITEMS:]]


class SessionStore(Protocol):
    def record(self, session_id: str, view_id: str, item_id: str, at_s: float) -> None: ...

    def views(self, session_id: str) -> list[View]: ...


def session_store(settings: PlatformSettings | None = None, table: str = TABLE) -> SessionStore:
    s = settings or platform_settings()
    if s.adapters == "aws":
        return DynamoSessionStore(physical_name("table", table))
    return SqliteSessionStore(s.state_dir / "tables" / f"{table}.db")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS session_views (
  session TEXT NOT NULL, view TEXT NOT NULL, item TEXT NOT NULL, at REAL NOT NULL,
  PRIMARY KEY (session, view)
) WITHOUT ROWID;
"""


class SqliteSessionStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = connect(path)
        self._conn.row_factory = None
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def record(self, session_id: str, view_id: str, item_id: str, at_s: float) -> None:
        with write_transaction(self._conn, self._lock) as c:
            c.execute(
                "INSERT OR REPLACE INTO session_views VALUES (?, ?, ?, ?)",
                (session_id, view_id, item_id, at_s),
            )

    def views(self, session_id: str) -> list[View]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT item, at FROM session_views WHERE session = ?", (session_id,)
            ).fetchall()
        return [(str(item), float(at)) for item, at in rows]


class DynamoSessionStore:
    def __init__(self, table: str, client: Any = None) -> None:
        self.table = table
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self._db = client

    def record(self, session_id: str, view_id: str, item_id: str, at_s: float) -> None:
        self._db.update_item(
            TableName=self.table,
            Key={"id": {"S": f"session#{session_id}"}},
            UpdateExpression="SET #v = :v, #e = :e",
            ExpressionAttributeNames={"#e": "expiration", "#v": f"v#{view_id}"},
            ExpressionAttributeValues={
                ":v": {"S": json.dumps([item_id, at_s])},
                ":e": {"N": str(int(at_s) + RETAIN_S)},
            },
        )

    def views(self, session_id: str) -> list[View]:
        got = self._db.get_item(
            TableName=self.table, Key={"id": {"S": f"session#{session_id}"}}, ConsistentRead=True
        )
        out: list[View] = []
        for name, value in got.get("Item", {}).items():
            if name.startswith("v#"):
                item, at = json.loads(value["S"])
                out.append((str(item), float(at)))
        return out
