"""Live session profiles: what a session viewed, decayed, for the next recommendation.

`Product Viewed` events (`functions/shop_events`) record each view once per (session, event
id): a redelivered event changes nothing. A session's profile weighs each item by its views,
each counting `0.5 ** (age / HALF_LIFE_S)`; items whose weight fell under `MIN_WEIGHT` (a
single view about two hours old) drop out, and at most `MAX_PROFILE_ITEMS` of the heaviest are
kept, strongest last (the recommender's "most recent last"). The recommendation service reads
it on `GET /v1/recommendations/{user_id}?session=<id>`.

Locally a SQLite file under the state folder, one row per view (the profile computed from them
exactly; views older than `RETAIN_S` deleted once a minute). On AWS the DynamoDB table CDK
makes from `[resources] tables`, bounded whatever the session does: one item per session
(`session#<id>`) holding its items' decayed weights as of its latest view (views decay alike,
so weights rescaled to a common time add up exactly), at most `STORED_ITEMS` of the heaviest,
and one small marker per view (`sessionview#<session>#<event id>`) written in the same
transaction so that a redelivery adds nothing. Both expire a day after the view. A crawler's
session of 100,000 views stays a few KB (one attribute per view, as before, passed DynamoDB's
400 KB item limit after ~5,000 views and then failed every later view). The bound's one
approximation: an item pushed out of the top `STORED_ITEMS` and viewed again starts from its
new view, without its residual weight (at most the weight of the `STORED_ITEMS`-th item).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from aibackend.adapters.local import connect, write_transaction
from aibackend.settings import PlatformSettings, physical_name, platform_settings

TABLE = "recommend-sessions"
HALF_LIFE_S = 1_800.0
MIN_WEIGHT = 0.06
MAX_PROFILE_ITEMS = 50
RETAIN_S = 86_400
#: Items a session's DynamoDB item keeps (the heaviest); a profile reads MAX_PROFILE_ITEMS.
STORED_ITEMS = 2 * MAX_PROFILE_ITEMS
#: Reads and conditional writes of one view before it fails (and the event is retried).
MAX_TRIES = 8

View = tuple[str, float]  # (item id, viewed at: epoch seconds)


class SessionView(NamedTuple):
    """One `Product Viewed` event to record: its session, its event id, the item, when."""

    session_id: str
    view_id: str
    item_id: str
    at_s: float


def profile(views: Iterable[View], now_s: float) -> list[str]:
    """The profile's items, lightest first, from the session's views."""
    weight: dict[str, float] = defaultdict(float)
    for item, at in views:
        weight[item] += _decay(now_s - at)
    return _heaviest(weight)


def _decay(age_s: float) -> float:
    return math.pow(0.5, max(0.0, age_s) / HALF_LIFE_S)


def _heaviest(weight: dict[str, float]) -> list[str]:
    kept = sorted((w, item) for item, w in weight.items() if w >= MIN_WEIGHT)
    return [item for _, item in kept[-MAX_PROFILE_ITEMS:]]


@dataclass(frozen=True)
class Weights:
    """A session's items and their decayed weights as of `at` (epoch s): what DynamoDB keeps."""

    at: float
    items: dict[str, float]

    def add(self, item_id: str, at_s: float) -> Weights:
        """With one more view; past the `STORED_ITEMS` heaviest items dropped. Items under
        `MIN_WEIGHT` stay while there is room: a later view adds to their residual weight."""
        ref = max(self.at, at_s)
        scale = _decay(ref - self.at)
        items = {i: w * scale for i, w in self.items.items()}
        items[item_id] = items.get(item_id, 0.0) + _decay(ref - at_s)
        if len(items) > STORED_ITEMS:
            kept = sorted(((w, i) for i, w in items.items()), reverse=True)[:STORED_ITEMS]
            items = {i: w for w, i in kept}
        return Weights(at=ref, items=items)

    def profile(self, now_s: float) -> list[str]:
        scale = _decay(now_s - self.at)
        return _heaviest({i: w * scale for i, w in self.items.items()})


class SessionStore(Protocol):
    def record(self, session_id: str, view_id: str, item_id: str, at_s: float) -> None: ...

    def record_many(self, views: Sequence[SessionView]) -> None:
        """`record` of each view, in order (a batch of events: one transaction locally)."""
        ...

    def profile(self, session_id: str, now_s: float) -> list[str]:
        """The session's profile at `now_s` (see `profile`); [] for a session never seen."""
        ...


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
CREATE INDEX IF NOT EXISTS session_views_at ON session_views (at);
"""


class SqliteSessionStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = connect(path)
        self._conn.row_factory = None
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._pruned = -1  # the minute views past RETAIN_S were last deleted

    def record(self, session_id: str, view_id: str, item_id: str, at_s: float) -> None:
        self.record_many([SessionView(session_id, view_id, item_id, at_s)])

    def record_many(self, views: Sequence[SessionView]) -> None:
        if not views:
            return
        # A view stamped in the future prunes no more than now.
        now = min(max(v.at_s for v in views), time.time())
        with write_transaction(self._conn, self._lock) as c:
            c.executemany("INSERT OR REPLACE INTO session_views VALUES (?, ?, ?, ?)", views)
            if int(now // 60) > self._pruned:
                # Once a minute, the views DynamoDB would have expired (weight 2^-48 by then).
                self._pruned = int(now // 60)
                c.execute("DELETE FROM session_views WHERE at < ?", (now - RETAIN_S,))

    def views(self, session_id: str) -> list[View]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT item, at FROM session_views WHERE session = ?", (session_id,)
            ).fetchall()
        return [(str(item), float(at)) for item, at in rows]

    def profile(self, session_id: str, now_s: float) -> list[str]:
        return profile(self.views(session_id), now_s)


class SessionChangedError(RuntimeError):
    """A view could not be recorded: its session kept changing under it (retried first)."""


class DynamoSessionStore:
    def __init__(self, table: str, client: Any = None) -> None:
        self.table = table
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self._db = client

    def record(self, session_id: str, view_id: str, item_id: str, at_s: float) -> None:
        key = {"id": {"S": f"session#{session_id}"}}
        expires = {"N": str(int(at_s) + RETAIN_S)}
        marker = {
            "Put": {
                "TableName": self.table,
                "Item": {"id": {"S": f"sessionview#{session_id}#{view_id}"}, "expiration": expires},
                "ConditionExpression": "attribute_not_exists(id)",
            }
        }
        for _ in range(MAX_TRIES):
            item = self._db.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
            version = int(item["ver"]["N"]) if item else 0
            now = _weights(item).add(item_id, at_s)
            # Read, then write only if no one wrote in between (optimistic: the version).
            session: dict[str, Any] = {
                "TableName": self.table,
                "Item": {
                    **key,
                    "t": {"N": repr(now.at)},
                    "w": {"S": json.dumps(now.items, separators=(",", ":"))},
                    "ver": {"N": str(version + 1)},
                    "expiration": {"N": str(int(now.at) + RETAIN_S)},
                },
            }
            if item is None:
                session["ConditionExpression"] = "attribute_not_exists(id)"
            else:
                session["ConditionExpression"] = "ver = :v"
                session["ExpressionAttributeValues"] = {":v": {"N": str(version)}}
            try:
                self._db.transact_write_items(TransactItems=[marker, {"Put": session}])
                return
            except self._db.exceptions.TransactionCanceledException as e:
                codes = [r.get("Code") for r in e.response.get("CancellationReasons", [])]
                if codes[:1] == ["ConditionalCheckFailed"]:
                    return  # this view was recorded before
                if codes[1:2] != ["ConditionalCheckFailed"]:
                    raise
                # another view of the session was written since the read: read again
        raise SessionChangedError(
            f"session {session_id}: view {view_id} not recorded, the session changed under it "
            f"{MAX_TRIES} times in a row"
        )

    def record_many(self, views: Sequence[SessionView]) -> None:
        # One session item per view, read then conditionally written: no batch API helps.
        for v in views:
            self.record(*v)

    def profile(self, session_id: str, now_s: float) -> list[str]:
        got = self._db.get_item(
            TableName=self.table, Key={"id": {"S": f"session#{session_id}"}}, ConsistentRead=True
        )
        return _weights(got.get("Item")).profile(now_s)


def _weights(item: dict[str, Any] | None) -> Weights:
    if not item:
        return Weights(at=0.0, items={})
    return Weights(at=float(item["t"]["N"]), items=json.loads(item["w"]["S"]))
