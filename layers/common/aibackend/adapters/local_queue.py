"""Local queues with SQS semantics: one SQLite database (WAL) shared by threads and processes.

At-least-once delivery, visibility timeout, per-message and per-queue delay, max receive
count with a dead-letter queue, retention, long polling and redrive, with SQS's limits and
attribute names, so a handler that works here works on SQS (`aibackend.adapters.sqs`).

Durability: every state change is one SQLite transaction in WAL mode with
`synchronous=NORMAL`. A committed send, receive or delete survives a crash of the process; an
OS crash or power loss may lose the last few transactions (WAL frames not yet synced), never
corrupt the database. Several processes may share the file: writes take SQLite's write lock
(`BEGIN IMMEDIATE`, waiting up to `busy_timeout`), so two consumers never receive the same
message while it is in flight.

Deliberate differences from SQS (standard queues):

- Order: oldest first, by the time a message became visible, then send order (SQS does not
  promise any order).
- A delete with a superseded receipt handle (the message was received again since) is
  ignored, and so is a delete of a message that is already gone; SQS documents that such a
  request "succeeds, but the message might not be deleted". A handle this engine never issued
  raises `ReceiptHandleError` (SQS: `ReceiptHandleIsInvalid`).
- `change_visibility` with a handle that is no longer current raises `ReceiptHandleError`.
- Messages past the queue's retention are dropped when a receive meets them (and are no longer
  counted by `stats`), not by a background sweep.
- Long-poll deadlines use the real monotonic clock even when a clock is injected, so a frozen
  test clock cannot make `receive(wait_s=...)` hang. Sends in this process wake a waiting
  receive of that queue at once (and only of that queue); other processes' sends are seen
  within `poll_interval_s` (a waiting receive checks SQLite's `data_version`, and reads the
  queue only after another connection committed).
- A message moved to the dead-letter queue keeps its id, body, attributes, send time and receive
  count (as on SQS); `redrive` keeps the id and resets the receive count.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aibackend.adapters.local import cache_hot, connect, new_id, write_transaction
from aibackend.errors import AibError, NotFoundError
from aibackend.ports import QueueConfig, QueueMessage, QueueStats

# SQS limits (standard queues).
MAX_BATCH = 10
MAX_MESSAGE_BYTES = 262_144  # 256 KiB: one message (body + attributes), and a whole batch
MAX_DELAY_S = 900
MAX_WAIT_S = 20
MAX_VISIBILITY_S = 43_200
MIN_RETENTION_S = 60
MAX_RETENTION_S = 1_209_600
MAX_RECEIVE_COUNT = 1_000
MAX_MESSAGE_ATTRIBUTES = 10
#: `SenderId` of messages sent through the local engine (SQS puts the sender's IAM id there).
LOCAL_SENDER_ID = "local"

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,256}")
_DATA_TYPE = re.compile(r"(String|Number)(\.[A-Za-z0-9_.-]+)?")
# Characters SQS refuses in a body: everything outside #x9 | #xA | #xD | #x20-#xD7FF |
# #xE000-#xFFFD | #x10000-#x10FFFF (lone surrogates included).
_INVALID_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class QueueNotFoundError(NotFoundError):
    title = "Queue not found"


class QueueRequestError(AibError):
    """A request SQS would refuse: a limit exceeded or a malformed value (the message names it)."""

    status = 400
    title = "Invalid queue request"


class ReceiptHandleError(QueueRequestError):
    """A receipt handle that was never issued, or that no longer holds its message in flight."""

    title = "Invalid receipt handle"


class QueueBatchError(AibError):
    """Some entries of a batch failed on SQS (the local engine applies a batch all or nothing)."""

    status = 502
    title = "Queue batch partly failed"

    def __init__(
        self, message: str, *, succeeded: Mapping[int, str], failed: Sequence[tuple[int, str, str]]
    ) -> None:
        super().__init__(message)
        #: Entry index -> message id (sends) or receipt handle (deletes) of what went through.
        self.succeeded = dict(succeeded)
        #: (entry index, error code, error message) of what did not.
        self.failed = tuple(failed)


# ---------------------------------------------------------------------------------------------
# Checks shared with the SQS adapter: both refuse the same requests with the same errors.


def check_range(value: float, low: float, high: float, what: str) -> None:
    if not low <= value <= high:
        raise QueueRequestError(f"{what} must be between {low} and {high}, got {value}")


def check_queue_name(name: str) -> str:
    if not _QUEUE_NAME.fullmatch(name):
        raise QueueRequestError(
            f"queue name {name!r} must be 1 to 80 letters, digits, hyphens or underscores"
        )
    return name


def check_config(config: QueueConfig) -> QueueConfig:
    """Refuse a configuration SQS would refuse, or one whose redrive policy is half set."""
    check_queue_name(config.name)
    check_range(config.visibility_timeout_s, 0, MAX_VISIBILITY_S, "visibility_timeout_s")
    check_range(config.retention_s, MIN_RETENTION_S, MAX_RETENTION_S, "retention_s")
    check_range(config.delay_s, 0, MAX_DELAY_S, "delay_s")
    if (config.max_receive_count is None) != (config.dead_letter_queue is None):
        raise QueueRequestError(
            f"queue {config.name!r}: set max_receive_count and dead_letter_queue together "
            "(a redrive policy needs both)"
        )
    if config.max_receive_count is not None:
        check_range(config.max_receive_count, 1, MAX_RECEIVE_COUNT, "max_receive_count")
    if config.dead_letter_queue is not None:
        check_queue_name(config.dead_letter_queue)
        if config.dead_letter_queue == config.name:
            raise QueueRequestError(f"queue {config.name!r} cannot be its own dead-letter queue")
    return config


def dead_letter_config(name: str) -> QueueConfig:
    """How a dead-letter queue is created when `ensure` meets a missing one.

    Maximum retention: SQS expires a moved message by its original send time, so a DLQ should
    keep messages longer than its sources do.
    """
    return QueueConfig(name=name, retention_s=MAX_RETENTION_S)


def check_message_attributes(
    attributes: Mapping[str, Mapping[str, str]] | None,
) -> tuple[dict[str, dict[str, str]], int]:
    """Attributes in SQS's shape, normalized, and the bytes they count toward the size limit."""
    if not attributes:
        return {}, 0
    if len(attributes) > MAX_MESSAGE_ATTRIBUTES:
        raise QueueRequestError(
            f"a message carries at most {MAX_MESSAGE_ATTRIBUTES} attributes, got {len(attributes)}"
        )
    out: dict[str, dict[str, str]] = {}
    size = 0
    for name, attr in attributes.items():
        if (
            not _ATTRIBUTE_NAME.fullmatch(name)
            or name.startswith((".", "AWS.", "Amazon."))
            or name.endswith(".")
            or ".." in name
        ):
            raise QueueRequestError(
                f"message attribute name {name!r} must be 1 to 256 letters, digits, '_', '-' or "
                "'.', without leading, trailing or double periods or an AWS./Amazon. prefix"
            )
        data_type = attr.get("DataType", "")
        value = attr.get("StringValue")
        if set(attr) - {"DataType", "StringValue"} or not _DATA_TYPE.fullmatch(data_type):
            raise QueueRequestError(
                f"message attribute {name!r} must be {{'DataType': 'String' or 'Number', "
                f"'StringValue': ...}} (binary attributes are not supported), got {dict(attr)}"
            )
        if not isinstance(value, str) or not value:
            raise QueueRequestError(f"message attribute {name!r} needs a non-empty StringValue")
        if data_type.startswith("Number"):
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                raise QueueRequestError(
                    f"message attribute {name!r} is a Number but {value!r} is not a finite number"
                )
        if _INVALID_CHARS.search(value):
            raise QueueRequestError(f"message attribute {name!r} contains characters SQS refuses")
        out[name] = {"DataType": data_type, "StringValue": value}
        size += len(name.encode()) + len(data_type.encode()) + len(value.encode())
    return out, size


def check_message(
    body: str, attributes: Mapping[str, Mapping[str, str]] | None = None
) -> tuple[dict[str, dict[str, str]], int]:
    """Refuse an empty body, characters SQS refuses, or more than 256 KiB with the attributes.

    Returns the normalized attributes and the message's size in bytes.
    """
    if not body:
        raise QueueRequestError("a message body must hold at least 1 character")
    bad = _INVALID_CHARS.search(body)
    if bad is not None:
        raise QueueRequestError(
            f"message body holds {bad.group()!r} at index {bad.start()}: SQS accepts only "
            "#x9, #xA, #xD, #x20-#xD7FF, #xE000-#xFFFD and #x10000-#x10FFFF"
        )
    attrs, attr_size = check_message_attributes(attributes)
    size = len(body.encode()) + attr_size
    if size > MAX_MESSAGE_BYTES:
        raise QueueRequestError(
            f"message is {size:,} bytes (body + attributes); the SQS limit is "
            f"{MAX_MESSAGE_BYTES:,} bytes (256 KiB)"
        )
    return attrs, size


def check_batch(bodies: Sequence[str]) -> None:
    """1 to 10 valid bodies whose total stays within 256 KiB (SQS's `BatchRequestTooLong`)."""
    check_batch_size(len(bodies))
    total = sum(check_message(body)[1] for body in bodies)
    if total > MAX_MESSAGE_BYTES:
        raise QueueRequestError(
            f"batch is {total:,} bytes in all; the SQS limit for a whole batch is "
            f"{MAX_MESSAGE_BYTES:,} bytes (256 KiB)"
        )


def check_batch_size(n: int) -> None:
    if not 1 <= n <= MAX_BATCH:
        raise QueueRequestError(f"a batch holds 1 to {MAX_BATCH} entries, got {n}")


def check_receive(max_messages: int, wait_s: float, visibility_timeout_s: int | None) -> None:
    check_range(max_messages, 1, MAX_BATCH, "max_messages")
    check_range(wait_s, 0, MAX_WAIT_S, "wait_s")
    if visibility_timeout_s is not None:
        check_range(visibility_timeout_s, 0, MAX_VISIBILITY_S, "visibility_timeout_s")


# ---------------------------------------------------------------------------------------------
# Storage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  visibility_timeout_s INTEGER NOT NULL,
  max_receive_count INTEGER,
  dead_letter_queue TEXT,
  retention_s INTEGER NOT NULL,
  delay_s INTEGER NOT NULL,
  created_at REAL NOT NULL,
  updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS queue_messages (
  seq INTEGER PRIMARY KEY,
  queue INTEGER NOT NULL REFERENCES queues (id),
  id TEXT NOT NULL,
  body TEXT NOT NULL,
  attrs TEXT,
  sent_at REAL NOT NULL,
  visible_at REAL NOT NULL,
  receive_count INTEGER NOT NULL DEFAULT 0,
  first_receive_at REAL,
  receipt TEXT
);
-- Receive reads this range in order (visible_at, then seq: the rowid closes every index key).
CREATE INDEX IF NOT EXISTS queue_messages_visible ON queue_messages (queue, visible_at);
-- When each message was deleted (its consumer done with it), kept DONE_KEPT_S: what tells
-- `aib simulate` that a consumer of a queue a rule fills has run (SQS itself only counts them,
-- CloudWatch's NumberOfMessagesDeleted).
CREATE TABLE IF NOT EXISTS queue_done (
  id TEXT PRIMARY KEY,
  done_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queue_done_at ON queue_done (done_at);
"""

_UPSERT_QUEUE = """
INSERT INTO queues (name, visibility_timeout_s, max_receive_count, dead_letter_queue,
                    retention_s, delay_s, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET
  visibility_timeout_s = excluded.visibility_timeout_s,
  max_receive_count = excluded.max_receive_count,
  dead_letter_queue = excluded.dead_letter_queue,
  retention_s = excluded.retention_s,
  delay_s = excluded.delay_s,
  updated_at = excluded.updated_at
"""
_INSERT_QUEUE_IF_MISSING = """
INSERT INTO queues (name, visibility_timeout_s, max_receive_count, dead_letter_queue,
                    retention_s, delay_s, created_at, updated_at)
VALUES (?, ?, NULL, NULL, ?, ?, ?, ?)
ON CONFLICT (name) DO NOTHING
"""
_INSERT = (
    "INSERT INTO queue_messages (queue, id, body, attrs, sent_at, visible_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_RECEIVE_CONFIG = (
    "SELECT q.visibility_timeout_s, q.max_receive_count, d.id, q.retention_s FROM queues q "
    "LEFT JOIN queues d ON d.name = q.dead_letter_queue WHERE q.id = ?"
)
_SELECT_VISIBLE = (
    "SELECT seq, id, body, attrs, sent_at, receive_count, first_receive_at FROM queue_messages "
    "WHERE queue = ? AND visible_at <= ? ORDER BY visible_at, seq LIMIT ?"
)
_EARLIEST_VISIBLE = "SELECT MIN(visible_at) FROM queue_messages WHERE queue = ?"
_MARK_RECEIVED = (
    "UPDATE queue_messages SET visible_at = ?, receive_count = receive_count + 1, "
    "first_receive_at = COALESCE(first_receive_at, ?), receipt = ? WHERE seq = ?"
)
_MOVE_TO_DLQ = "UPDATE queue_messages SET queue = ?, visible_at = ?, receipt = NULL WHERE seq = ?"
_DROP = "DELETE FROM queue_messages WHERE seq = ?"
_DELETE = "DELETE FROM queue_messages WHERE seq = ? AND receipt = ? AND queue = ? RETURNING id"
#: How long `queue_done` remembers a deleted message (seconds).
DONE_KEPT_S = 3_600.0
_CHANGE_VISIBILITY = (
    "UPDATE queue_messages SET visible_at = ? WHERE seq = ? AND receipt = ? AND queue = ?"
)
_STATS = """
SELECT COALESCE(SUM(visible_at <= :now), 0),
       COALESCE(SUM(visible_at > :now AND receive_count > 0), 0),
       COALESCE(SUM(visible_at > :now AND receive_count = 0), 0)
FROM queue_messages WHERE queue = :queue AND sent_at >= :oldest
"""
_REDRIVE = (
    "UPDATE queue_messages SET queue = ?, visible_at = ?, receive_count = 0, "
    "first_receive_at = NULL, receipt = NULL WHERE queue = ?"
)

_TOKEN_CHARS = 16

# One row as it leaves a receive transaction: (seq, id, body, attrs, sent_at, count, first).
_Received = tuple[int, str, str, str | None, float, int, float]


@dataclass(frozen=True)
class PeekedMessage:
    """A message as `SqliteQueue.peek` shows it (not received: no receipt handle)."""

    message_id: str
    body: str
    attributes: dict[str, Any]
    sent_at: float
    visible: bool
    receive_count: int


def _parse_handle(handle: str) -> tuple[int, str]:
    seq, sep, token = handle.partition(":")
    if not (sep and seq.isdigit() and len(token) == _TOKEN_CHARS and token.isalnum()):
        raise ReceiptHandleError(f"receipt handle {handle!r} was not issued by this queue engine")
    return int(seq), token


def _ms(t: float) -> str:
    return str(int(t * 1000))


class _Signal:
    """What a queue's long polls in this process wait on: notified when a message of the
    queue may have become visible (a send, a redrive, a visibility reset)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        #: How often it was notified: a poll that read it before its attempt sees a
        #: notification that came during the attempt.
        self.generation = 0

    def notify(self) -> None:
        with self._cond:
            self.generation += 1
            self._cond.notify_all()

    def wait(self, generation: int, timeout: float) -> bool:
        """Wait up to `timeout` for a notification after `generation`; whether one came."""
        with self._cond:
            if self.generation == generation:
                self._cond.wait(timeout)
            return self.generation != generation


class SqliteQueueService:
    """Every queue of the local runtime in one SQLite database; implements `QueueService`.

    Thread-safe (one connection behind a lock) and safe across processes (SQLite locking).
    `clock` gives epoch seconds for message timestamps, visibility and delays; tests inject a
    fake one. `poll_interval_s` bounds how late a long poll sees another process's send.
    """

    def __init__(
        self,
        db_path: Path,
        *,
        clock: Callable[[], float] = time.time,
        poll_interval_s: float = 0.05,
    ) -> None:
        self.db_path = db_path
        self.clock = clock
        self.poll_interval_s = poll_interval_s
        #: When this process last pruned `queue_done` (at most once a minute).
        self.done_pruned_at = 0.0
        self._conn = connect(db_path)
        cache_hot(self._conn)
        self._conn.row_factory = None  # plain tuples: receive is the hot path
        self._lock = threading.Lock()
        #: Per queue id: what its long polls in this process wait on.
        self._signals: dict[int, _Signal] = {}
        self._signals_lock = threading.Lock()
        with self._lock:
            self._conn.executescript(_SCHEMA)

    # -- plumbing shared with SqliteQueue ----------------------------------------------------

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._conn, self._lock)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent snapshot that never blocks writers (WAL)."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def _signal(self, queue_id: int) -> _Signal:
        """One queue's signal. (One for every queue woke each queue's pollers on every send,
        and each ran a write transaction for nothing, contending with the senders.)"""
        signal = self._signals.get(queue_id)
        if signal is None:
            with self._signals_lock:
                signal = self._signals.setdefault(queue_id, _Signal())
        return signal

    def _data_version(self) -> int:
        """SQLite's count of commits by other connections (other processes) to this file."""
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _known(self, c: sqlite3.Connection) -> str:
        names = [r[0] for r in c.execute("SELECT name FROM queues ORDER BY name")]
        return ", ".join(names) or "none"

    def _queue_id(self, c: sqlite3.Connection, name: str) -> int:
        row = c.execute("SELECT id FROM queues WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise QueueNotFoundError(
                f"queue {name!r} does not exist (known queues: {self._known(c)})"
            )
        return int(row[0])

    # -- QueueService ------------------------------------------------------------------------

    def ensure(self, config: QueueConfig) -> SqliteQueue:
        """Create the queue, or update its configuration; a missing dead-letter queue is created.

        Messages already in the queue keep their visibility; the new settings apply to later
        sends and receives.
        """
        check_config(config)
        now = self.clock()
        with self._tx() as c:
            if config.dead_letter_queue is not None:
                dlq = dead_letter_config(config.dead_letter_queue)
                c.execute(
                    _INSERT_QUEUE_IF_MISSING,
                    (dlq.name, dlq.visibility_timeout_s, dlq.retention_s, dlq.delay_s, now, now),
                )
            c.execute(
                _UPSERT_QUEUE,
                (
                    config.name,
                    config.visibility_timeout_s,
                    config.max_receive_count,
                    config.dead_letter_queue,
                    config.retention_s,
                    config.delay_s,
                    now,
                    now,
                ),
            )
            queue_id = self._queue_id(c, config.name)
        return SqliteQueue(self, config.name, queue_id)

    def get(self, name: str) -> SqliteQueue:
        with self._read() as c:
            return SqliteQueue(self, name, self._queue_id(c, name))

    def list(self) -> list[QueueStats]:
        with self._read() as c:
            rows = c.execute("SELECT name, id FROM queues ORDER BY name").fetchall()
        return [SqliteQueue(self, name, queue_id).stats() for name, queue_id in rows]

    def redrive(self, dead_letter_queue: str, *, to: str | None = None) -> int:
        """Move every message of a DLQ (in flight or not) back, with a fresh receive count.

        The target is `to`, else the one queue whose configuration names this DLQ. One
        transaction: a crash leaves every message on one side.
        """
        now = self.clock()
        with self._tx() as c:
            dlq_id = self._queue_id(c, dead_letter_queue)
            if to is None:
                sources = [
                    r[0]
                    for r in c.execute(
                        "SELECT name FROM queues WHERE dead_letter_queue = ? ORDER BY name",
                        (dead_letter_queue,),
                    )
                ]
                if len(sources) != 1:
                    raise QueueRequestError(
                        f"{len(sources)} queues use {dead_letter_queue!r} as their dead-letter "
                        f"queue ({', '.join(sources) or 'none'}); pass `to` to choose the target"
                    )
                to = sources[0]
            if to == dead_letter_queue:
                raise QueueRequestError(f"cannot redrive {dead_letter_queue!r} into itself")
            target_id = self._queue_id(c, to)
            moved = c.execute(_REDRIVE, (target_id, now, dlq_id)).rowcount
        if moved:
            self._signal(target_id).notify()
        return moved

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SqliteQueueService:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SqliteQueue:
    """One queue of a `SqliteQueueService`; implements `Queue`. Cheap to create."""

    def __init__(self, service: SqliteQueueService, name: str, queue_id: int) -> None:
        self.name = name
        self._svc = service
        self._id = queue_id
        self._signal = service._signal(queue_id)

    def __repr__(self) -> str:
        return f"SqliteQueue({self.name!r}, db={str(self._svc.db_path)!r})"

    def send(
        self,
        body: str,
        *,
        delay_s: int | None = None,
        message_attributes: Mapping[str, Mapping[str, str]] | None = None,
    ) -> str:
        """Enqueue one message; returns its id. `delay_s` None: the queue's delay applies."""
        attrs, _ = check_message(body, message_attributes)
        return self._insert([(body, json.dumps(attrs) if attrs else None)], delay_s)[0]

    def send_batch(self, bodies: Sequence[str], *, delay_s: int | None = None) -> list[str]:
        """Enqueue 1 to 10 messages in one transaction; returns their ids in order."""
        check_batch(bodies)
        return self._insert([(body, None) for body in bodies], delay_s)

    def _insert(self, entries: list[tuple[str, str | None]], delay_s: int | None) -> list[str]:
        if delay_s is not None:
            check_range(delay_s, 0, MAX_DELAY_S, "delay_s")
        ids = [new_id() for _ in entries]
        now = self._svc.clock()
        with self._svc._tx() as c:
            row = c.execute("SELECT delay_s FROM queues WHERE id = ?", (self._id,)).fetchone()
            if row is None:
                raise QueueNotFoundError(f"queue {self.name!r} no longer exists")
            visible_at = now + (row[0] if delay_s is None else delay_s)
            c.executemany(
                _INSERT,
                [
                    (self._id, mid, body, attrs, now, visible_at)
                    for mid, (body, attrs) in zip(ids, entries, strict=True)
                ],
            )
        self._signal.notify()
        return ids

    def receive(
        self,
        max_messages: int = 1,
        *,
        wait_s: float = 0,
        visibility_timeout_s: int | None = None,
    ) -> list[QueueMessage]:
        """Up to `max_messages` visible messages, oldest first, hidden for the visibility timeout.

        With `wait_s` > 0, blocks until at least one message is received or the wait ends.
        """
        check_receive(max_messages, wait_s, visibility_timeout_s)
        deadline = time.monotonic() + wait_s
        while True:
            # Taken before the attempt: a notification after it shows.
            generation = self._signal.generation
            got = self._receive_now(max_messages, visibility_timeout_s)
            if got or deadline - time.monotonic() <= 0:
                return got
            if not self._wait_for_change(generation, deadline):
                return []

    def _wait_for_change(self, generation: int, deadline: float) -> bool:
        """Wait until a message of this queue may be visible, or `deadline` passes (False).

        One may be when this process notified the queue (a send, a redrive, a visibility
        reset), when the earliest hidden or delayed message is due, or after another
        connection committed (another process's send, seen within `poll_interval_s`) and the
        queue's earliest visibility time says so. Each poll reads SQLite's commit counter and
        the clock, and the queue's index only after a commit elsewhere; a poll used to run a
        receive, a write transaction, and the pollers of an idle `aib dev` spent ~3% of a core
        on it."""
        svc = self._svc
        # The counter first: a commit elsewhere before it shows in `due`, one after it in the
        # counter.
        version = svc._data_version()
        due = self._earliest_visible()
        while True:
            if due is not None and svc.clock() >= due:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._signal.wait(generation, min(remaining, svc.poll_interval_s)):
                return True
            now_version = svc._data_version()
            if now_version != version:
                version, due = now_version, self._earliest_visible()

    def _earliest_visible(self) -> float | None:
        """When this queue's earliest message is (or was) visible; None when it has none."""
        with self._svc._read() as c:
            row = c.execute(_EARLIEST_VISIBLE, (self._id,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def _receive_now(
        self, max_messages: int, visibility_timeout_s: int | None
    ) -> list[QueueMessage]:
        svc = self._svc
        now = svc.clock()
        token = secrets.token_hex(_TOKEN_CHARS // 2)
        taken: list[_Received] = []
        moved = 0
        with svc._tx() as c:
            config = c.execute(_RECEIVE_CONFIG, (self._id,)).fetchone()
            if config is None:
                raise QueueNotFoundError(f"queue {self.name!r} no longer exists")
            visibility, max_receives, dlq_id, retention = config
            hidden_until = now + (
                visibility if visibility_timeout_s is None else visibility_timeout_s
            )
            oldest = now - retention
            redrive = max_receives is not None and dlq_id is not None
            limit = max_messages
            while True:
                rows = c.execute(_SELECT_VISIBLE, (self._id, now, limit)).fetchall()
                take: list[_Received] = []
                expired: list[tuple[int]] = []
                dead: list[tuple[int, float, int]] = []
                for seq, mid, body, attrs, sent_at, count, first in rows:
                    if sent_at < oldest:
                        expired.append((seq,))
                    elif redrive and count >= max_receives:
                        # The (max_receive_count + 1)-th receive: to the DLQ instead, as SQS does.
                        dead.append((dlq_id, now, seq))
                    else:
                        take.append(
                            (
                                seq,
                                mid,
                                body,
                                attrs,
                                sent_at,
                                count + 1,
                                now if first is None else first,
                            )
                        )
                if expired:
                    c.executemany(_DROP, expired)
                if dead:
                    c.executemany(_MOVE_TO_DLQ, dead)
                    moved += len(dead)
                if take:
                    c.executemany(_MARK_RECEIVED, [(hidden_until, now, token, t[0]) for t in take])
                    taken.extend(take)
                # Refill only when rows were dropped or moved and the range may hold more.
                if len(rows) < limit or not (expired or dead):
                    break
                limit = max_messages - len(taken)
        if moved:
            svc._signal(dlq_id).notify()
        return [
            QueueMessage(
                message_id=mid,
                receipt_handle=f"{seq}:{token}",
                body=body,
                md5_of_body=hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
                attributes={
                    "ApproximateReceiveCount": str(count),
                    "SentTimestamp": _ms(sent_at),
                    "ApproximateFirstReceiveTimestamp": _ms(first),
                    "SenderId": LOCAL_SENDER_ID,
                },
                message_attributes=json.loads(attrs) if attrs else {},
            )
            for seq, mid, body, attrs, sent_at, count, first in taken
        ]

    def delete(self, receipt_handle: str) -> None:
        """Delete a received message; a superseded or already-used handle is ignored."""
        self.delete_batch([receipt_handle])

    def delete_batch(self, receipt_handles: Sequence[str]) -> None:
        check_batch_size(len(receipt_handles))
        rows = [(*_parse_handle(h), self._id) for h in receipt_handles]
        now = self._svc.clock()
        with self._svc._tx() as c:
            done = [(mid, now) for row in rows for (mid,) in c.execute(_DELETE, row).fetchall()]
            c.executemany("INSERT OR REPLACE INTO queue_done VALUES (?, ?)", done)
            if now - self._svc.done_pruned_at > 60:
                c.execute("DELETE FROM queue_done WHERE done_at < ?", (now - DONE_KEPT_S,))
                self._svc.done_pruned_at = now

    def change_visibility(self, receipt_handle: str, timeout_s: int) -> None:
        """Hide an in-flight message for `timeout_s` more seconds from now; 0: visible now."""
        check_range(timeout_s, 0, MAX_VISIBILITY_S, "timeout_s")
        seq, token = _parse_handle(receipt_handle)
        with self._svc._tx() as c:
            changed = c.execute(
                _CHANGE_VISIBILITY, (self._svc.clock() + timeout_s, seq, token, self._id)
            ).rowcount
        if not changed:
            raise ReceiptHandleError(
                f"no message of queue {self.name!r} is in flight under receipt handle "
                f"{receipt_handle!r} (deleted, or received again since)"
            )
        if timeout_s == 0:
            self._signal.notify()

    def _settings(self, c: sqlite3.Connection) -> tuple[float, str | None]:
        """(retention in seconds, dead-letter queue) of this queue, read in `c`."""
        row = c.execute(
            "SELECT retention_s, dead_letter_queue FROM queues WHERE id = ?", (self._id,)
        ).fetchone()
        if row is None:
            raise QueueNotFoundError(f"queue {self.name!r} no longer exists")
        return row[0], row[1]

    def peek(self, limit: int = 10) -> list[PeekedMessage]:
        """The oldest `limit` messages, visible or not, without receiving them: no receive
        count moves, no visibility changes (what the SQS console's "poll for messages" cannot
        promise). For reading a dead-letter or failure queue's reasons."""
        now = self._svc.clock()
        with self._svc._read() as c:
            retention, _ = self._settings(c)
            rows = c.execute(
                "SELECT id, body, attrs, sent_at, visible_at, receive_count FROM queue_messages "
                "WHERE queue = ? AND sent_at >= ? ORDER BY sent_at, seq LIMIT ?",
                (self._id, now - retention, limit),
            ).fetchall()
        return [
            PeekedMessage(
                message_id=r[0],
                body=r[1],
                attributes=json.loads(r[2]) if r[2] else {},
                sent_at=r[3],
                visible=r[4] <= now,
                receive_count=r[5],
            )
            for r in rows
        ]

    def stats(self) -> QueueStats:
        now = self._svc.clock()
        with self._svc._read() as c:
            retention, dlq = self._settings(c)
            visible, in_flight, delayed = c.execute(
                _STATS, {"now": now, "queue": self._id, "oldest": now - retention}
            ).fetchone()
        return QueueStats(
            name=self.name,
            visible=visible,
            in_flight=in_flight,
            delayed=delayed,
            dead_letter_queue=dlq,
        )
