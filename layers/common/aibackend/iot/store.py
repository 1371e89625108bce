"""The online window table: each device's readings by reading time.

`record_and_window` writes a reading, then reads back the device's readings in
`(t - WINDOW_SPAN_S, t]`. Keyed by (device, reading time): a redelivered reading rewrites its
own entry, and a late one only adds itself, so a reading's window does not depend on arrival
order (a reading that arrives after later ones is scored on the readings before it).

Locally a SQLite file under the state folder (`<state>/tables/iot-readings.db`); on AWS the
DynamoDB table CDK makes from `[resources] tables` (partition key `id`, TTL attribute
`expiration`): one item per device and UTC hour (`dev#<device>#<YYYY-MM-DDTHH>`), one
attribute per reading (`r#<reading time in ms>` = value), set by name; a window (10 minutes)
spans at most two items, read with one BatchGetItem. Items expire a day after their hour.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from aibackend.adapters.local import connect, write_transaction
from aibackend.iot.window import WINDOW_READINGS, WINDOW_SPAN_S
from aibackend.settings import PlatformSettings, physical_name, platform_settings

TABLE = "iot-readings"
#: How long a DynamoDB item outlives its hour.
RETAIN_S = 86_400
_HOUR_MS = 3_600_000

Reading = tuple[float, float]  # (reading time, epoch seconds; value)


#: One reading to store: (device id, reading time in epoch seconds, value).
NewReading = tuple[str, float, float]


class ReadingStore(Protocol):
    def record_and_window(self, device_id: str, at_s: float, value: float) -> list[Reading]:
        """Store the reading; return the device's readings in `(at_s - WINDOW_SPAN_S, at_s]`
        (the last `WINDOW_READINGS`, ascending, this one included)."""
        ...

    def record_and_windows(self, readings: Sequence[NewReading]) -> list[list[Reading]]:
        """`record_and_window` of each reading, in order, all stored first: a reading's window
        ends at its own time, so readings of one batch see one another as they would one at a
        time in time order."""
        ...


def reading_store(settings: PlatformSettings | None = None, table: str = TABLE) -> ReadingStore:
    s = settings or platform_settings()
    if s.adapters == "aws":
        return DynamoReadingStore(physical_name("table", table))
    return SqliteReadingStore(s.state_dir / "tables" / f"{table}.db")


def _ms(at_s: float) -> int:
    return round(at_s * 1000)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
  device TEXT NOT NULL, at_ms INTEGER NOT NULL, value REAL NOT NULL,
  PRIMARY KEY (device, at_ms)
) WITHOUT ROWID;
"""


class SqliteReadingStore:
    """One connection for the store's life, shared by threads under a lock (as the pipeline's
    feature table)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = connect(path)
        self._conn.row_factory = None
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def record_and_window(self, device_id: str, at_s: float, value: float) -> list[Reading]:
        return self.record_and_windows([(device_id, at_s, value)])[0]

    def record_and_windows(self, readings: Sequence[NewReading]) -> list[list[Reading]]:
        """One write transaction for the batch: its inserts, then each reading's window."""
        if not readings:
            return []
        span = _ms(WINDOW_SPAN_S)
        with write_transaction(self._conn, self._lock) as c:
            c.executemany(
                "INSERT OR REPLACE INTO readings VALUES (?, ?, ?)",
                [(device, _ms(at_s), value) for device, at_s, value in readings],
            )
            windows = []
            for device, at_s, _ in readings:
                at = _ms(at_s)
                rows = c.execute(
                    "SELECT at_ms, value FROM readings WHERE device = ? AND at_ms > ? "
                    "AND at_ms <= ? ORDER BY at_ms DESC LIMIT ?",
                    (device, at - span, at, WINDOW_READINGS),
                ).fetchall()
                windows.append([(ms / 1000, v) for ms, v in reversed(rows)])
        return windows


def _hour(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms // _HOUR_MS * 3600, UTC).strftime("%Y-%m-%dT%H")


class DynamoReadingStore:
    def __init__(self, table: str, client: Any = None) -> None:
        self.table = table
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self._db = client

    def _key(self, device_id: str, at_ms: int) -> str:
        return f"dev#{device_id}#{_hour(at_ms)}"

    def record_and_window(self, device_id: str, at_s: float, value: float) -> list[Reading]:
        return self.record_and_windows([(device_id, at_s, value)])[0]

    def _put(self, device_id: str, at: int, value: float) -> None:
        expires = at // _HOUR_MS * 3600 + 3600 + RETAIN_S
        self._db.update_item(
            TableName=self.table,
            Key={"id": {"S": self._key(device_id, at)}},
            UpdateExpression="SET #r = :v, #e = :e",
            ExpressionAttributeNames={"#e": "expiration", "#r": f"r#{at}"},
            ExpressionAttributeValues={":v": {"N": repr(float(value))}, ":e": {"N": str(expires)}},
        )

    def _window(self, device_id: str, at: int) -> list[Reading]:
        since = at - _ms(WINDOW_SPAN_S)
        keys = sorted({self._key(device_id, since + 1), self._key(device_id, at)})
        readings = [
            (int(name[2:]), float(v["N"]))
            for item in self._get(keys)
            for name, v in item.items()
            if name.startswith("r#") and since < int(name[2:]) <= at
        ]
        readings.sort()
        return [(ms / 1000, v) for ms, v in readings[-WINDOW_READINGS:]]

    def record_and_windows(self, readings: Sequence[NewReading]) -> list[list[Reading]]:
        """All readings written first (one UpdateItem each: a reading is an attribute of its
        device-hour item), then each window read."""
        for device, at_s, value in readings:
            self._put(device, _ms(at_s), value)
        return [self._window(device, _ms(at_s)) for device, at_s, _ in readings]

    def _get(self, keys: Sequence[str]) -> Iterator[dict[str, Any]]:
        pending: dict[str, Any] = {
            self.table: {"Keys": [{"id": {"S": k}} for k in keys], "ConsistentRead": True}
        }
        while pending:
            got = self._db.batch_get_item(RequestItems=pending)
            yield from got.get("Responses", {}).get(self.table, [])
            pending = got.get("UnprocessedKeys") or {}
