"""The online feature table: every card's transactions by id and event time.

The score stage writes a chunk's transactions first, then reads the histories of the chunk's
cards and computes each transaction's features with `aibackend.fraud.velocity` (the shared
definition). Writes are keyed by (card, transaction id), so a redelivered chunk rewrites the
same entries and a late chunk only adds its own: no value depends on arrival order. Locally a
SQLite file under the state folder; on AWS the DynamoDB table CDK makes from
`[resources] tables` (partition key `id`).
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np

from aibackend.adapters.local import connect, write_transaction
from aibackend.fraud.velocity import US, CardHistories, CardHistory, Txn, histories
from aibackend.settings import PlatformSettings, physical_name, platform_settings

TABLE = "pipeline-features"
#: Keys in one DynamoDB BatchGetItem, at most.
_BATCH_GET = 100
#: Transactions set by one UpdateItem: keeps its expression far below DynamoDB's 4 KB limit.
_SETS_PER_UPDATE = 50
#: DynamoDB requests in flight at once. A chunk writes one UpdateItem per card and day and reads
#: one BatchGetItem per 100 card-days (~31 days a card): a 20,000-row chunk is ~20,000 writes
#: and ~5,000 reads, minutes of round trips one at a time, seconds 32 at a time.
_CONCURRENCY = 32
#: First wait before asking again for a BatchGetItem's unprocessed keys (doubling), and the most.
_BACKOFF_S = 0.05
_BACKOFF_MAX_S = 2.0
#: SQLite page cache of the local table (KiB): a chunk's writes and reads touch pages all over
#: the table's B-tree.
_CACHE_KIB = 64 * 1024
#: WAL pages before a checkpoint copies them back into the table (SQLite's default: 1,000). A
#: chunk's inserts land on pages all over the table (5,000 rows: ~4,500 pages, 18 MB of WAL);
#: with the default, every commit was followed by a checkpoint rewriting all of them, so each
#: page went to disk twice per chunk. 20,000 pages (80 MB) lets a page that several chunks
#: rewrite be copied back once: a 5,000-row put 47 -> 36 ms of CPU (62 -> 41 ms of wall time,
#: most of it under the write lock) at 1M rows. The WAL file stays at up to that size (a
#: `journal_size_limit` cutting it back after each checkpoint cost 6 ms a put).
_CHECKPOINT_PAGES = 20_000


class FeatureStore(Protocol):
    def put(self, txns: Sequence[Txn]) -> None:
        """Add or replace transactions (by card and transaction id)."""
        ...

    def histories(
        self, cards: Iterable[str], since_us: int, until_us: int
    ) -> Mapping[str, CardHistory]:
        """The cards' transactions with `since_us <= at_us < until_us`."""
        ...


def feature_store(settings: PlatformSettings | None = None, table: str = TABLE) -> FeatureStore:
    s = settings or platform_settings()
    if s.adapters == "aws":
        return DynamoFeatureStore(physical_name("table", table))
    return SqliteFeatureStore(s.state_dir / "tables" / f"{table}.db")


# --- local: SQLite ----------------------------------------------------------------------------

#: One history row as `histories` reads it: the card's position in the query, time, amount.
_HISTORY_ROW = np.dtype([("k", np.int64), ("at", np.int64), ("eur", np.float64)])

_SCHEMA = """
CREATE TABLE IF NOT EXISTS card_txns (
  card TEXT NOT NULL, txn TEXT NOT NULL, at INTEGER NOT NULL, amount_eur REAL NOT NULL,
  PRIMARY KEY (card, txn)
) WITHOUT ROWID;
-- No secondary index: the table is its own B-tree keyed by card first, so a chunk's history
-- read is a range scan per card (a few dozen rows each), filtered on `at`. An index on (card,
-- at, amount_eur) saved nothing on reads and doubled every write: a chunk's 5,000 inserts land
-- on pages all over both trees, and each page goes to the WAL (1M rows: 26 s of writes -> 15 s).
DROP INDEX IF EXISTS card_txns_window;
DROP INDEX IF EXISTS card_txns_at;
"""


class SqliteFeatureStore:
    """One connection for the store's life (not one per call): closing a WAL database's last
    connection checkpoints it, and a fresh connection starts with an empty page cache, which
    together cost more than the writes themselves. Threads share it under a lock; other
    processes open their own (SQLite's WAL locking keeps them consistent)."""

    def __init__(self, path: Any) -> None:
        self.path = path
        self._conn = connect(path)
        self._conn.row_factory = None  # plain tuples: a chunk reads thousands of rows
        self._conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        self._conn.execute(f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES}")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def put(self, txns: Sequence[Txn]) -> None:
        with write_transaction(self._conn, self._lock) as c:
            # A `Txn` is a tuple in the table's column order: (card, txn, at, amount_eur).
            c.executemany("INSERT OR REPLACE INTO card_txns VALUES (?, ?, ?, ?)", txns)

    def histories(self, cards: Iterable[str], since_us: int, until_us: int) -> CardHistories:
        """One query for all the cards (their ids travel as one JSON array parameter). Rows come
        back with the card's position in that array, not its id, straight into one numpy
        array, and are put in (card, time) order by numpy: half the time of fetching tuples
        with a string each and sorting in SQLite."""
        names = sorted(set(cards))
        with self._lock:
            cursor = self._conn.execute(
                "SELECT j.key, t.at, t.amount_eur FROM json_each(?) AS j "
                "JOIN card_txns AS t ON t.card = j.value WHERE t.at >= ? AND t.at < ?",
                (json.dumps(names), since_us, until_us),
            )
            rows = np.fromiter(cursor, dtype=_HISTORY_ROW)
        rows = rows[np.lexsort((rows["at"], rows["k"]))]
        return CardHistories.from_codes(names, rows["k"], rows["at"], rows["eur"])


# --- AWS: DynamoDB ------------------------------------------------------------------------------


def _day(at_us: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=at_us)).date().isoformat()


class DynamoFeatureStore:
    """One item per card and UTC day, `id` = `card#<card>#<YYYY-MM-DD>`, with one attribute per
    transaction (`t#<transaction id>` = `[at_us, amount_eur]` as JSON), each set by name (an
    overwrite). A card's 30-day history is at most 31 items, read with BatchGetItem; an item
    stays far below DynamoDB's 400 KB for any real card's day."""

    def __init__(self, table: str, client: Any = None, *, concurrency: int = _CONCURRENCY) -> None:
        self.table = table
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client("dynamodb", config=Config(max_pool_connections=concurrency))
        self._db = client
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="aib-features")

    def put(self, txns: Sequence[Txn]) -> None:
        """Each card-day item's UpdateItems in turn; different items side by side."""
        by_item: dict[str, list[Txn]] = defaultdict(list)
        for t in txns:
            by_item[f"card#{t.card_id}#{_day(t.at_us)}"].append(t)
        # list(): wait for every item; the first error raised is re-raised here (the chunk is
        # retried whole, and every write is an overwrite).
        list(self._pool.map(self._set_all, by_item.items()))

    def _set_all(self, item: tuple[str, list[Txn]]) -> None:
        key, txns = item
        for start in range(0, len(txns), _SETS_PER_UPDATE):
            self._set(key, txns[start : start + _SETS_PER_UPDATE])

    def _set(self, key: str, items: list[Txn]) -> None:
        """One UpdateItem setting each transaction's attribute by name (an overwrite)."""
        names = {f"#t{i}": f"t#{t.transaction_id}" for i, t in enumerate(items)}
        values = {f":t{i}": {"S": json.dumps([t.at_us, t.amount_eur])} for i, t in enumerate(items)}
        sets = ", ".join(f"#t{i} = :t{i}" for i in range(len(items)))
        self._db.update_item(
            TableName=self.table,
            Key={"id": {"S": key}},
            UpdateExpression=f"SET {sets}",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def histories(self, cards: Iterable[str], since_us: int, until_us: int) -> CardHistories:
        days = _days(since_us, until_us)
        keys = [f"card#{card}#{day}" for card in sorted(set(cards)) for day in days]
        rows: list[Txn] = []
        for item in self._get_all(keys):
            card = item["id"]["S"].removeprefix("card#").rsplit("#", 1)[0]
            for name, value in item.items():
                if name.startswith("t#"):
                    at, amount = json.loads(value["S"])
                    if since_us <= at < until_us:
                        rows.append(Txn(card, name[2:], int(at), float(amount)))
        return histories(rows)

    def _get_all(self, keys: list[str]) -> Iterator[dict[str, Any]]:
        batches = [keys[start : start + _BATCH_GET] for start in range(0, len(keys), _BATCH_GET)]
        for items in self._pool.map(self._get_batch, batches):
            yield from items

    def _get_batch(self, keys: list[str]) -> list[dict[str, Any]]:
        """One BatchGetItem, then its unprocessed keys again (backing off) until none is left."""
        pending: dict[str, Any] = {
            self.table: {"Keys": [{"id": {"S": k}} for k in keys], "ConsistentRead": True}
        }
        items: list[dict[str, Any]] = []
        wait = _BACKOFF_S
        while True:
            got = self._db.batch_get_item(RequestItems=pending)
            items += got.get("Responses", {}).get(self.table, [])
            pending = got.get("UnprocessedKeys") or {}
            if not pending:
                return items
            time.sleep(wait)  # throttled: back off before asking again, as the SDK advises
            wait = min(_BACKOFF_MAX_S, wait * 2)


def _days(since_us: int, until_us: int) -> list[str]:
    first = datetime.fromisoformat(_day(since_us))
    last = datetime.fromisoformat(_day(max(since_us, until_us - 1)))
    return [(first + timedelta(days=i)).date().isoformat() for i in range((last - first).days + 1)]


__all__ = ["TABLE", "US", "FeatureStore", "feature_store"]
