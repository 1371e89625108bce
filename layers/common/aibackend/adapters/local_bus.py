"""Local EventBridge: rules, targets, archive and replay in SQLite (WAL), durable across restarts.

How an event travels:

1. `put_events` validates each entry like PutEvents (bad entries come back as failures, the
   others are accepted), gives it an id and the EventBridge envelope, archives it and, in the
   SAME transaction, inserts one delivery row per matching (rule, target). Once `put_events`
   returns, a crash cannot lose a delivery.
2. A dispatcher claims due rows in a write transaction: the claim token plus a lease deadline
   (`due` moves to now + `lease_s`) make a row invisible to other dispatchers, in this process
   or another one on the same file, until the lease runs out; a crashed dispatcher's claims
   therefore come back. Completion is fenced by the claim token.
3. Function targets behave like Lambda asynchronous invocation: `deliver(target, payload)`
   raising is a failed attempt, retried after `retry_delays_s` up to `max_attempts` retries
   unless the event is older than `max_event_age_s`; then Lambda's on-failure destination
   record goes to `dead_letter_queue` and the row is marked failed (kept, never deleted).
   Queue targets are sent with `queues.get(name).send(...)`, retried the same way; their
   dead-letter message is EventBridge's (the event, with `ERROR_CODE`... message attributes).

`run_due()` runs due deliveries in the calling thread (tests, tools); `start()` runs a small
thread pool woken by `put_events` (and polling for rows written by other processes).

Retention (`sweep`, every minute while started): archived events older than
`archive_retention_s` (30 days, as the CDK archive) go, unless a pending delivery still needs
one; delivered rows go `delivered_retention_s` (a day) after their event arrived; failed rows
stay. Without it the file kept every event and delivery: ~1.5 MB/s at 1,000 events/s.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aibackend.adapters.local import cache_hot, connect, new_id, write_transaction
from aibackend.catalog import DEFAULT_BUS, PLATFORM_BUS
from aibackend.events.patterns import Pattern, compile_pattern
from aibackend.events.shapes import eventbridge_event
from aibackend.ports import PutEvent, PutEventsResult, Queue, QueueService

log = logging.getLogger("aib.bus")

#: PutEvents limits: entries per call, and bytes per entry / per call (256 KB).
MAX_ENTRIES = 10
MAX_EVENT_BYTES = 256 * 1024
#: EventBridge rule names and target count per rule.
_RULE_NAME = re.compile(r"^[.\-_A-Za-z0-9]{1,64}$")
MAX_TARGETS = 5
#: How often a running dispatcher checkpoints the WAL (off the commit path).
CHECKPOINT_EVERY_S = 1.0
#: How often a running dispatcher applies retention (`LocalEventBus.sweep`).
SWEEP_EVERY_S = 60.0
#: Rows deleted per transaction by a sweep: the bus's write lock is held only briefly.
SWEEP_CHUNK = 2000
ARCHIVE_RETENTION_S = 30 * 86_400.0
DELIVERED_RETENTION_S = 86_400.0

Deliver = Callable[["Target", Any], None]


class Target(BaseModel):
    """Where a rule sends matching events, with Lambda's asynchronous-invocation settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["function", "queue"]
    name: Annotated[str, Field(min_length=1, max_length=256)]
    #: JSONPath of the part of the event delivered, e.g. `$.detail` (None: the whole event).
    input_path: Annotated[str, Field(pattern=r"^\$(\.[A-Za-z0-9_-]+)*$")] | None = None
    #: Retries after the first attempt.
    max_attempts: Annotated[int, Field(ge=0, le=185)] = 2
    max_event_age_s: Annotated[int, Field(ge=1, le=86_400)] = 3600
    #: Queue that receives the on-failure record once retries or the event's age run out.
    dead_letter_queue: str | None = None
    #: The function's timeout: a retry never starts before a failed or killed invocation's
    #: deadline, so its idempotency record (in progress until then) cannot block the retry.
    timeout_s: Annotated[int, Field(ge=1, le=900)] | None = None


class Rule(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    bus: str
    pattern: dict[str, Any]
    targets: tuple[Target, ...]


class BusStats(BaseModel):
    """Delivery rows by state. `pending` excludes rows a dispatcher holds (`in_flight`)."""

    model_config = ConfigDict(frozen=True)

    pending: int
    in_flight: int
    delivered: int
    failed: int


# -- PutEvents entry checks (shared with the EventBridge adapter) -------------------------------


class EntryRefusedError(Exception):
    """One PutEvents entry refused, with EventBridge's ErrorCode and ErrorMessage."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def check_entry_count(entries: Sequence[PutEvent]) -> None:
    if not 1 <= len(entries) <= MAX_ENTRIES:
        raise ValueError(
            f"put_events takes 1 to {MAX_ENTRIES} entries (EventBridge's limit per call), "
            f"got {len(entries)}"
        )


def encode_entry(entry: PutEvent) -> tuple[str, int]:
    """The entry's `Detail` as JSON text and the entry's size as EventBridge counts it.

    Raises `EntryRefusedError` for what PutEvents refuses per entry.
    """
    if not entry.source.strip():
        raise EntryRefusedError(
            "InvalidArgument",
            "Parameter Source is not valid. Reason: Source is a required argument.",
        )
    if not entry.detail_type.strip():
        raise EntryRefusedError(
            "InvalidArgument",
            "Parameter DetailType is not valid. Reason: DetailType is a required argument.",
        )
    if not isinstance(entry.detail, dict):
        raise EntryRefusedError("MalformedDetail", "Detail is malformed.")
    try:
        detail = json.dumps(
            entry.detail, allow_nan=False, ensure_ascii=False, separators=(",", ":")
        )
    except (TypeError, ValueError) as e:
        raise EntryRefusedError("MalformedDetail", f"Detail is malformed. ({e})") from e
    # https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html
    size = (
        (14 if entry.time is not None else 0)
        + len(entry.source.encode())
        + len(entry.detail_type.encode())
        + len(detail.encode())
        + sum(len(r.encode()) for r in entry.resources)
    )
    if size > MAX_EVENT_BYTES:
        raise EntryRefusedError(
            "InvalidArgument",
            f"Entry is {size} bytes; an event may be at most {MAX_EVENT_BYTES} bytes (256 KB).",
        )
    return detail, size


def check_total_size(total: int) -> None:
    if total > MAX_EVENT_BYTES:
        raise ValueError(
            f"Total size of the entries in the request is over the limit: {total} bytes, "
            f"PutEvents takes at most {MAX_EVENT_BYTES} bytes (256 KB) per call"
        )


def iso_time(t: datetime) -> str:
    """EventBridge's `time`: UTC, whole seconds, `Z` (a naive datetime is taken as UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(t: datetime) -> float:
    return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).timestamp()


def _iso_ms(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def select_input(event: Any, input_path: str | None) -> Any:
    """The part of the event an `InputPath` like `$.detail.x` selects (None when absent)."""
    if not input_path or input_path == "$":
        return event
    current = event
    for part in input_path[2:].split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def _new_id() -> str:
    return new_id()


# -- storage -----------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bus_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO bus_meta VALUES ('rules_version', 0);
CREATE TABLE IF NOT EXISTS bus_rules (
  bus TEXT NOT NULL,
  name TEXT NOT NULL,
  pattern TEXT NOT NULL,
  targets TEXT NOT NULL,
  updated_at REAL NOT NULL,
  PRIMARY KEY (bus, name)
);
CREATE TABLE IF NOT EXISTS bus_archive (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  bus TEXT NOT NULL,
  event_time REAL NOT NULL,
  received_at REAL NOT NULL,
  event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS bus_archive_time ON bus_archive (event_time);
CREATE TABLE IF NOT EXISTS bus_deliveries (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL,
  replay_name TEXT,
  bus TEXT NOT NULL,
  rule TEXT NOT NULL,
  target TEXT NOT NULL,
  request_id TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at REAL NOT NULL,
  due REAL NOT NULL,
  claim TEXT,
  last_error TEXT,
  condition TEXT,
  failure TEXT,
  finished_at REAL,
  -- a queue target's message (the local queue's `queue_done` says when it was consumed)
  message_id TEXT
);
CREATE INDEX IF NOT EXISTS bus_deliveries_due ON bus_deliveries (due) WHERE state = 'pending';
"""


@dataclass(frozen=True)
class _CompiledRule:
    name: str
    pattern: Pattern
    #: (target, its JSON as stored on delivery rows)
    targets: tuple[tuple[Target, str], ...]


@dataclass(frozen=True)
class _BusRules:
    """A bus's rules, and which of them an event's `source` leaves to match: most patterns
    name their sources exactly (`"source": ["aib.shop"]`), and matching every rule's pattern
    against every event took ~8% of the runtime's interpreter time at 700 events/s."""

    #: Per source a pattern names exactly, the rules an event from it may match, in order.
    by_source: dict[str, tuple[_CompiledRule, ...]]
    #: The rules whose pattern names no exact sources (any event may match them), in order.
    any_source: tuple[_CompiledRule, ...]

    @classmethod
    def of(cls, rules: list[_CompiledRule]) -> _BusRules:
        named = {id(r): _exact_sources(r.pattern) for r in rules}
        sources = {s for names in named.values() if names is not None for s in names}
        return cls(
            by_source={
                src: tuple(r for r in rules if (n := named[id(r)]) is None or src in n)
                for src in sources
            },
            any_source=tuple(r for r in rules if named[id(r)] is None),
        )

    def candidates(self, envelope: dict[str, Any]) -> tuple[_CompiledRule, ...]:
        source = envelope.get("source")
        if isinstance(source, str) and (found := self.by_source.get(source)) is not None:
            return found
        return self.any_source


def _exact_sources(pattern: Pattern) -> frozenset[str] | None:
    """The sources an event must have to match `pattern`, when its `source` is a list of plain
    strings (exact matches); None when it has no such list (an operator, or no `source`)."""
    values = pattern.source.get("source")
    if isinstance(values, list) and values and all(isinstance(v, str) for v in values):
        return frozenset(values)
    return None


@dataclass(frozen=True)
class _Claimed:
    id: int
    claim: str
    event: dict[str, Any]
    bus: str
    rule: str
    target: Target
    request_id: str
    attempts: int
    created_at: float
    last_error: dict[str, Any] | None


#: A claimed delivery's outcome: the UPDATE of its row (fenced by the claim token).
_Finish = tuple[_Claimed, str, tuple[Any, ...]]
_HAND_BACK = "UPDATE bus_deliveries SET claim = NULL, due = ? WHERE id = ? AND claim = ?"


class LocalEventBus:
    """EventBridge on one machine: `put_events`, rules with targets, archive, replay, retries.

    Several instances (threads or processes) may share one `db_path`; each delivery row is
    handed to one of them at a time.
    """

    def __init__(
        self,
        db_path: Path,
        *,
        deliver: Deliver,
        queues: QueueService | None = None,
        clock: Callable[[], float] = time.time,
        ids: Callable[[], str] = _new_id,
        account: str = "000000000000",
        region: str = "local",
        retry_delays_s: Sequence[float] = (1.0, 2.0),
        buses: Iterable[str] = (PLATFORM_BUS, DEFAULT_BUS),
        lease_s: float = 900.0,
        poll_s: float = 0.05,
        claim_batch: int = 8,
        archive_retention_s: float = ARCHIVE_RETENTION_S,
        delivered_retention_s: float = DELIVERED_RETENTION_S,
    ) -> None:
        """`retry_delays_s[i]` is the wait before retry i+1 (the last one repeats); Lambda waits
        about 1 then 2 minutes. `lease_s` is how long a claimed delivery stays hidden from other
        dispatchers: keep it above the slowest delivery (900 s is Lambda's longest timeout);
        claims of a process that died on this machine come back sooner, at `start()`.
        `poll_s` is how often an idle dispatcher looks for rows written by other processes.
        A background worker claims up to `claim_batch` due rows at once (as `run_due` does),
        delivers them one after another and records their outcomes in one transaction: under a
        backlog, two bus transactions per batch instead of two per delivery. A row whose
        function timeout would carry it past its lease is handed back instead of delivered.
        `archive_retention_s` and `delivered_retention_s`: see `sweep`."""
        if not retry_delays_s or any(d < 0 for d in retry_delays_s):
            raise ValueError("retry_delays_s needs at least one delay, none negative")
        self.db_path = db_path
        self.account = account
        self.region = region
        self.buses = frozenset(buses)
        self._deliver = deliver
        self._queues = queues
        self._clock = clock
        self._ids = ids
        self._retry_delays = tuple(float(d) for d in retry_delays_s)
        self._lease_s = lease_s
        self._poll_s = poll_s
        if claim_batch < 1:
            raise ValueError(f"claim_batch must be at least 1, got {claim_batch}")
        self._claim_batch = claim_batch
        if archive_retention_s <= 0 or delivered_retention_s <= 0:
            raise ValueError("retention periods must be positive")
        self._archive_retention_s = archive_retention_s
        self._delivered_retention_s = delivered_retention_s
        self._conn = connect(db_path)
        cache_hot(self._conn)
        self._lock = threading.Lock()
        self._conn.executescript(_SCHEMA)
        if not self._has_message_ids(self._conn):
            # A bus file from before queue targets recorded their message. Looked at without
            # the write lock first: every process that opens the bus (each worker) does this.
            with self._tx() as c:
                if not self._has_message_ids(c):
                    c.execute("ALTER TABLE bus_deliveries ADD COLUMN message_id TEXT")
        self._rules_version = -1
        self._rules: dict[str, _BusRules] = {}
        self._compiled: dict[str, Pattern] = {}
        self._targets: dict[str, Target] = {}
        self._queue_cache: dict[str, Queue] = {}
        self._cond = threading.Condition()
        self._generation = 0
        self._stopping = False
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    @staticmethod
    def _has_message_ids(c: sqlite3.Connection) -> bool:
        return any(r[1] == "message_id" for r in c.execute("PRAGMA table_info(bus_deliveries)"))

    # -- transactions ---------------------------------------------------------------------------

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._conn, self._lock)

    def _refresh_rules(self, c: sqlite3.Connection) -> None:
        """Reload the rules when any instance changed them (call inside a transaction)."""
        version = c.execute("SELECT value FROM bus_meta WHERE key = 'rules_version'").fetchone()[0]
        if version == self._rules_version:
            return
        rules: dict[str, list[_CompiledRule]] = {}
        for row in c.execute("SELECT * FROM bus_rules ORDER BY bus, name"):
            pattern = self._compiled.get(row["pattern"])
            if pattern is None:
                pattern = self._compiled[row["pattern"]] = compile_pattern(row["pattern"])
            targets = tuple(
                (t, t.model_dump_json())
                for t in (Target.model_validate(d) for d in json.loads(row["targets"]))
            )
            rules.setdefault(row["bus"], []).append(_CompiledRule(row["name"], pattern, targets))
        self._rules = {bus: _BusRules.of(compiled) for bus, compiled in rules.items()}
        self._rules_version = version

    def _target(self, text: str) -> Target:
        target = self._targets.get(text)
        if target is None:
            target = self._targets[text] = Target.model_validate_json(text)
        return target

    # -- rules ----------------------------------------------------------------------------------

    def put_rule(
        self, name: str, *, bus: str, pattern: Mapping[str, Any], targets: Sequence[Target]
    ) -> Rule:
        """Create or replace the rule `name` on `bus` (idempotent). Deliveries already queued
        keep the target they were queued for."""
        if not _RULE_NAME.match(name):
            raise ValueError(f"rule name {name!r} must be 1 to 64 letters, digits, '.', '-' or '_'")
        self._check_bus(bus)
        compile_pattern(pattern)  # refuses invalid patterns with the path at fault
        if not 1 <= len(targets) <= MAX_TARGETS:
            raise ValueError(f"rule {name!r}: 1 to {MAX_TARGETS} targets, got {len(targets)}")
        seen: set[tuple[str, str]] = set()
        for t in targets:
            if (t.kind, t.name) in seen:
                raise ValueError(f"rule {name!r}: target {t.kind} {t.name!r} is listed twice")
            seen.add((t.kind, t.name))
            if self._queues is None and (t.kind == "queue" or t.dead_letter_queue):
                raise ValueError(
                    f"rule {name!r}: target {t.name!r} needs queues (a queue target or a "
                    "dead-letter queue) but this bus was created without `queues`"
                )
        rule = Rule(name=name, bus=bus, pattern=dict(pattern), targets=tuple(targets))
        with self._tx() as c:
            c.execute(
                "INSERT INTO bus_rules VALUES (?, ?, ?, ?, ?) ON CONFLICT (bus, name) DO UPDATE "
                "SET pattern = excluded.pattern, targets = excluded.targets, "
                "updated_at = excluded.updated_at",
                (
                    bus,
                    name,
                    json.dumps(rule.pattern, sort_keys=True),
                    json.dumps([t.model_dump() for t in rule.targets]),
                    self._clock(),
                ),
            )
            c.execute("UPDATE bus_meta SET value = value + 1 WHERE key = 'rules_version'")
        return rule

    def delete_rule(self, name: str, *, bus: str) -> bool:
        """Remove a rule; returns whether it existed. Queued deliveries are still made."""
        with self._tx() as c:
            gone = c.execute(
                "DELETE FROM bus_rules WHERE bus = ? AND name = ?", (bus, name)
            ).rowcount
            if gone:
                c.execute("UPDATE bus_meta SET value = value + 1 WHERE key = 'rules_version'")
        return bool(gone)

    def rules(self) -> list[Rule]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM bus_rules ORDER BY bus, name").fetchall()
        return [
            Rule(
                name=r["name"],
                bus=r["bus"],
                pattern=json.loads(r["pattern"]),
                targets=tuple(Target.model_validate(t) for t in json.loads(r["targets"])),
            )
            for r in rows
        ]

    def _check_bus(self, bus: str) -> None:
        if bus not in self.buses:
            raise ValueError(f"event bus {bus!r} does not exist (known: {sorted(self.buses)})")

    # -- publishing -----------------------------------------------------------------------------

    def put_events(self, entries: Sequence[PutEvent]) -> PutEventsResult:
        """Accept 1 to 10 events: archive them and queue their deliveries, in one transaction.

        Entries EventBridge would refuse (no source, detail not a JSON object, over 256 KB,
        unknown bus) come back in `failures`; the others are accepted.
        """
        entries = list(entries)
        check_entry_count(entries)
        now = self._clock()
        event_ids: list[str | None] = [None] * len(entries)
        failures: list[tuple[int, str, str]] = []
        accepted: list[tuple[str, float, str, dict[str, Any]]] = []
        total = 0
        for i, entry in enumerate(entries):
            try:
                detail, size = encode_entry(entry)
                if entry.bus not in self.buses:
                    raise EntryRefusedError(
                        "ResourceNotFoundException", f"Event bus {entry.bus} does not exist."
                    )
            except EntryRefusedError as e:
                failures.append((i, e.code, e.message))
                continue
            total += size
            event_id = self._ids()
            when = entry.time or datetime.fromtimestamp(now, UTC)
            envelope = eventbridge_event(
                entry, event_id=event_id, time=when, account=self.account, region=self.region
            )
            envelope["detail"] = json.loads(detail)  # as it will travel: JSON, normalized
            event_ids[i] = event_id
            accepted.append((entry.bus, _epoch(when), json.dumps(envelope), envelope))
        check_total_size(total)
        if accepted:
            queued = 0
            with self._tx() as c:
                self._refresh_rules(c)
                for bus, event_time, text, envelope in accepted:
                    c.execute(
                        "INSERT INTO bus_archive (id, bus, event_time, received_at, event) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (envelope["id"], bus, event_time, now, text),
                    )
                    queued += self._queue_deliveries(c, bus, envelope, None, now)
            if queued:
                self._wake(queued)
        return PutEventsResult(event_ids=tuple(event_ids), failures=tuple(failures))

    def _queue_deliveries(
        self,
        c: sqlite3.Connection,
        bus: str,
        envelope: dict[str, Any],
        replay_name: str | None,
        now: float,
    ) -> int:
        rules = self._rules.get(bus)
        rows = [
            (envelope["id"], replay_name, bus, rule.name, text, self._ids(), now, now)
            for rule in (rules.candidates(envelope) if rules is not None else ())
            if rule.pattern.matches(envelope)
            for _, text in rule.targets
        ]
        if rows:
            c.executemany(
                "INSERT INTO bus_deliveries (event_id, replay_name, bus, rule, target, "
                "request_id, created_at, due) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    def replay(self, since: datetime, until: datetime, *, name: str, bus: str | None = None) -> int:
        """Send archived events whose `time` lies in [since, until) again, to the rules that
        match now, with `"replay-name": name` in the envelope (as EventBridge replays do).
        Replayed events are not archived again. Returns the number of events replayed."""
        start, end = _epoch(since), _epoch(until)
        if end < start:
            raise ValueError(f"replay window ends ({until}) before it starts ({since})")
        now = self._clock()
        sql = "SELECT bus, event FROM bus_archive WHERE event_time >= ? AND event_time < ?"
        args: tuple[Any, ...] = (start, end)
        if bus is not None:
            sql, args = sql + " AND bus = ?", (*args, bus)
        queued = 0
        with self._tx() as c:
            self._refresh_rules(c)
            rows = c.execute(sql + " ORDER BY event_time, seq", args).fetchall()
            for row in rows:
                envelope = json.loads(row["event"])
                envelope["replay-name"] = name
                queued += self._queue_deliveries(c, row["bus"], envelope, name, now)
        if queued:
            self._wake(queued)
        return len(rows)

    # -- dispatching ----------------------------------------------------------------------------

    def run_due(self, now: float | None = None, max_items: int = 100) -> int:
        """Make the deliveries due at `now` (default: the clock) in this thread; returns how
        many were processed (delivered, rescheduled or failed)."""
        done = 0
        while done < max_items:
            batch = self._claim(self._clock() if now is None else now, min(10, max_items - done))
            if not batch:
                break
            finishes: list[_Finish] = []
            claimed_at = self._clock()
            try:
                sent = self._send_to_queues(batch, now)
                for i, d in enumerate(batch):
                    if (
                        d.id not in sent
                        and i
                        and self._clock() - claimed_at + (d.target.timeout_s or 0) > self._lease_s
                    ):
                        # Its lease could run out before it finished, and another dispatcher
                        # take it over mid-delivery: hand it back, due now.
                        finishes.append((d, _HAND_BACK, (claimed_at, d.id, d.claim)))
                        continue
                    self._process(d, now, finishes, sent.get(d.id))
                    done += 1
            finally:
                self._finish_all(finishes)
        return done

    def _claim(self, now: float, limit: int) -> list[_Claimed]:
        token = f"{os.getpid()}/{self._ids()}"
        with self._tx() as c:
            rows = c.execute(
                "UPDATE bus_deliveries SET claim = ?, due = ? WHERE id IN (SELECT id FROM "
                "bus_deliveries WHERE state = 'pending' AND due <= ? ORDER BY due, id LIMIT ?) "
                "RETURNING id, event_id, replay_name, bus, rule, target, request_id, attempts, "
                "created_at, last_error",
                (token, now + self._lease_s, now, limit),
            ).fetchall()
            if not rows:
                return []
            ids = sorted({r["event_id"] for r in rows})
            events = {
                e["id"]: e["event"]
                for e in c.execute(
                    f"SELECT id, event FROM bus_archive WHERE id IN ({','.join('?' * len(ids))})",
                    ids,
                )
            }
        claimed = []
        for r in sorted(rows, key=lambda r: r["id"]):
            event = json.loads(events[r["event_id"]])
            if r["replay_name"] is not None:
                event["replay-name"] = r["replay_name"]
            claimed.append(
                _Claimed(
                    id=r["id"],
                    claim=token,
                    event=event,
                    bus=r["bus"],
                    rule=r["rule"],
                    target=self._target(r["target"]),
                    request_id=r["request_id"],
                    attempts=r["attempts"],
                    created_at=r["created_at"],
                    last_error=json.loads(r["last_error"]) if r["last_error"] else None,
                )
            )
        return claimed

    def _send_to_queues(
        self, batch: list[_Claimed], now: float | None
    ) -> dict[int, str | Exception]:
        """Send the claimed batch's deliveries into queues up front, a `send_batch` (one
        transaction locally) per queue and 10 messages, where one send each made the runtime's
        dispatchers write the queue file once an event and consumer. Delivery id -> the
        message's id, or why its send failed (`_process` then retries it as before)."""
        at = self._clock() if now is None else now
        groups: dict[str, list[_Claimed]] = {}
        for d in batch:
            if d.target.kind == "queue" and at - d.created_at <= d.target.max_event_age_s:
                groups.setdefault(d.target.name, []).append(d)
        sent: dict[int, str | Exception] = {}
        for name, group in groups.items():
            for start in range(0, len(group), 10):
                chunk = group[start : start + 10]
                bodies = [json.dumps(select_input(d.event, d.target.input_path)) for d in chunk]
                try:
                    ids: list[str | Exception] = list(self._queue(name).send_batch(bodies))
                except Exception as e:
                    ids = [e] * len(chunk)
                sent.update(zip((d.id for d in chunk), ids, strict=True))
        return sent

    def _process(
        self,
        d: _Claimed,
        now: float | None,
        finishes: list[_Finish],
        sent: str | Exception | None,
    ) -> None:
        """Deliver one claimed row; its outcome (the row's update) goes to `finishes`. A queue
        target's send was made up front (`_send_to_queues`): `sent` is its outcome, None when
        the event was too old to send (decided there once, so no clock step between the two
        can mark an unsent event delivered)."""
        target = d.target
        at = self._clock() if now is None else now
        if target.kind == "queue":
            expired = sent is None
        else:
            expired = at - d.created_at > target.max_event_age_s
        if expired:
            self._fail(d, at, "EventAgeExceeded", d.last_error, d.attempts, finishes)
            return
        started = at
        message_id = None
        try:
            if target.kind == "function":
                self._deliver(target, select_input(d.event, target.input_path))
            elif isinstance(sent, Exception):
                raise sent
            else:
                message_id = sent
        except Exception as e:
            at = self._clock() if now is None else now
            error = _error_info(e)
            attempts = d.attempts + 1
            if attempts > target.max_attempts:
                self._fail(d, at, "RetriesExhausted", error, attempts, finishes)
                return
            retry_at = max(
                at + self._retry_delays[min(attempts, len(self._retry_delays)) - 1],
                started + (target.timeout_s or 0),
            )
            if retry_at - d.created_at > target.max_event_age_s:
                self._fail(d, at, "EventAgeExceeded", error, attempts, finishes)
                return
            log.info(
                "delivery of %s to %s %s failed (attempt %d), retrying in %.1fs: %s",
                d.event["id"],
                target.kind,
                target.name,
                attempts,
                retry_at - at,
                e,
            )
            finishes.append(
                (
                    d,
                    "UPDATE bus_deliveries SET claim = NULL, due = ?, attempts = ?, last_error = ? "
                    "WHERE id = ? AND claim = ?",
                    (retry_at, attempts, json.dumps(error), d.id, d.claim),
                )
            )
            return
        at = self._clock() if now is None else now
        finishes.append(
            (
                d,
                "UPDATE bus_deliveries SET state = 'delivered', claim = NULL, attempts = ?, "
                "finished_at = ?, message_id = ? WHERE id = ? AND claim = ?",
                (d.attempts + 1, at, message_id, d.id, d.claim),
            )
        )

    def _finish_all(self, finishes: list[_Finish]) -> None:
        """Record the outcomes of one claimed batch in one transaction. A crash before it
        commits hands the whole batch out again once the leases run out: at least once, as
        EventBridge and Lambda's asynchronous invocation promise."""
        if not finishes:
            return
        with self._tx() as c:
            for d, sql, args in finishes:
                if c.execute(sql, args).rowcount == 0:
                    log.warning(
                        "delivery %d of event %s: the lease ran out before it finished and "
                        "another dispatcher took it over; raise lease_s above the slowest "
                        "delivery",
                        d.id,
                        d.event["id"],
                    )

    def _fail(
        self,
        d: _Claimed,
        at: float,
        condition: Literal["RetriesExhausted", "EventAgeExceeded"],
        error: dict[str, Any] | None,
        attempts: int,
        finishes: list[_Finish],
    ) -> None:
        target = d.target
        body, attributes = self._failure_message(d, at, condition, error, attempts)
        dlq = target.dead_letter_queue
        outcome = "no dead-letter queue"
        if dlq:
            try:
                self._queue(dlq).send(body, message_attributes=attributes)
                outcome = f"on-failure record sent to {dlq!r}"
            except Exception as e:
                # Never lost: the record stays on the failed row (see `failures()`).
                outcome = f"sending the on-failure record to {dlq!r} failed too: {e!r}"
        log.warning(
            "event %s to %s %s: %s after %d attempt(s), %s; kept as failed",
            d.event["id"],
            target.kind,
            target.name,
            condition,
            attempts,
            outcome,
        )
        finishes.append(
            (
                d,
                "UPDATE bus_deliveries SET state = 'failed', claim = NULL, attempts = ?, "
                "last_error = ?, condition = ?, failure = ?, finished_at = ? "
                "WHERE id = ? AND claim = ?",
                (attempts, json.dumps(error), condition, body, at, d.id, d.claim),
            )
        )

    def _failure_message(
        self,
        d: _Claimed,
        at: float,
        condition: Literal["RetriesExhausted", "EventAgeExceeded"],
        error: dict[str, Any] | None,
        attempts: int,
    ) -> tuple[str, dict[str, dict[str, str]] | None]:
        target = d.target
        if target.kind == "function":
            # Lambda's on-failure destination record for asynchronous invocations.
            record: dict[str, Any] = {
                "version": "1.0",
                "timestamp": _iso_ms(at),
                "requestContext": {
                    "requestId": d.request_id,
                    "functionArn": self.function_arn(target.name),
                    "condition": condition,
                    "approximateInvokeCount": attempts,
                },
                "requestPayload": select_input(d.event, target.input_path),
            }
            if error is not None:
                record["responseContext"] = {
                    "statusCode": 200,
                    "executedVersion": "$LATEST",
                    "functionError": "Unhandled",
                }
                record["responsePayload"] = error
            return json.dumps(record), None

        # EventBridge's target dead-letter queue: the event, with why in message attributes.
        def attr(value: str) -> dict[str, str]:
            return {"DataType": "String", "StringValue": value}

        attributes = {
            "RULE_ARN": attr(self.rule_arn(d.rule, d.bus)),
            "TARGET_ARN": attr(f"arn:aws:sqs:{self.region}:{self.account}:{target.name}"),
            "ERROR_CODE": attr(error["errorType"] if error else "EventAgeExceeded"),
            "ERROR_MESSAGE": attr(error["errorMessage"] if error else "event too old"),
            "EXHAUSTED_RETRY_CONDITION": attr(
                "MaximumRetryAttempts" if condition == "RetriesExhausted" else "MaximumEventAge"
            ),
            "RETRY_ATTEMPTS": attr(str(max(0, attempts - 1))),
        }
        return json.dumps(d.event), attributes

    def _queue(self, name: str) -> Queue:
        queue = self._queue_cache.get(name)
        if queue is None:
            if self._queues is None:
                raise RuntimeError(f"queue {name!r}: this bus was created without `queues`")
            queue = self._queue_cache[name] = self._queues.get(name)
        return queue

    def function_arn(self, name: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{name}:$LATEST"

    def rule_arn(self, name: str, bus: str) -> str:
        path = name if bus == DEFAULT_BUS else f"{bus}/{name}"
        return f"arn:aws:events:{self.region}:{self.account}:rule/{path}"

    # -- background dispatcher ------------------------------------------------------------------

    def _wake(self, n: int) -> None:
        """Wake the dispatchers `n` new deliveries need: each claims up to `claim_batch`, so
        waking more finds them nothing to claim (a read and an empty write transaction each,
        and threads contending for the interpreter)."""
        with self._cond:
            self._generation += 1
            self._cond.notify(-(-n // self._claim_batch))

    def _next_due(self) -> float | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT MIN(due) FROM bus_deliveries WHERE state = 'pending'"
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def start(self, workers: int = 2) -> None:
        """Deliver in `workers` background threads until `stop()`.

        While running, WAL checkpoints move off the commit path into a thread of their own:
        SQLite's automatic checkpoint runs inside whichever commit crosses the threshold
        (every ~150 events here) and costs that put or delivery several milliseconds.
        """
        if self._threads:
            return
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._stopping = False
        self._stopped.clear()
        self.release_orphans()
        with self._lock:
            self._conn.execute("PRAGMA wal_autocheckpoint = 0")
        self._threads = [
            threading.Thread(target=self._work, name=f"aib-bus-{i}", daemon=True)
            for i in range(workers)
        ]
        self._threads.append(
            threading.Thread(target=self._checkpoint, name="aib-bus-checkpoint", daemon=True)
        )
        for t in self._threads:
            t.start()

    def release_orphans(self) -> int:
        """Hand back, due now, the deliveries held by dispatcher processes of this machine that
        no longer run (a crash of `aib dev`), instead of waiting for their leases; returns how
        many. Claims carry the claiming process id."""
        with self._lock:
            claims = [
                r[0]
                for r in self._conn.execute(
                    "SELECT DISTINCT claim FROM bus_deliveries "
                    "WHERE state = 'pending' AND claim IS NOT NULL"
                )
            ]
        dead = [c for c in claims if not _process_alive(c.partition("/")[0])]
        if not dead:
            return 0
        released = 0
        now = self._clock()
        with self._tx() as c:
            for claim in dead:
                # Claimed at `due - lease_s`; the killed invocation's deadline is its function
                # timeout later (an idempotency record in progress holds the key until then).
                released += c.execute(
                    "UPDATE bus_deliveries SET claim = NULL, due = MAX(?, due - ? + "
                    "COALESCE(json_extract(target, '$.timeout_s'), 0)) "
                    "WHERE state = 'pending' AND claim = ?",
                    (now, self._lease_s, claim),
                ).rowcount
        log.warning("took back %d delivery(ies) held by dispatchers that died", released)
        return released

    def _work(self) -> None:
        while not self._stopping:
            generation = self._generation
            try:
                # Look (a read) before claiming (a write transaction): after each delivery
                # the worker comes back here, usually to find nothing due.
                due, now = self._next_due(), self._clock()
                if due is not None and due <= now:
                    self.run_due(max_items=self._claim_batch)
                    continue
                timeout = self._poll_s if due is None else min(self._poll_s, due - now)
            except Exception:
                log.exception("event bus dispatcher error; retrying")
                timeout = 1.0
            with self._cond:
                if self._generation == generation and not self._stopping:
                    self._cond.wait(timeout)

    def _checkpoint(self) -> None:
        """The housekeeping thread: a WAL checkpoint every second, retention every minute
        (the first at start, so a restart after a long pause catches up)."""
        conn = connect(self.db_path)
        next_sweep = time.monotonic()
        try:
            while True:
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SWEEP_EVERY_S
                    try:
                        self.sweep()
                    except sqlite3.Error:
                        log.exception("event bus retention sweep failed; retrying in a minute")
                # Its own event, not the workers' condition: a notify must reach a worker.
                stopping = self._stopped.wait(CHECKPOINT_EVERY_S)
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    log.exception("event bus WAL checkpoint failed; retrying")
                if stopping:
                    return
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop the background threads after the deliveries they are making."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._stopped.set()
        for t in self._threads:
            t.join()
        if self._threads:
            with self._lock:
                self._conn.execute("PRAGMA wal_autocheckpoint = 1000")
        self._threads = []

    def close(self) -> None:
        self.stop()
        with self._lock:
            self._conn.close()

    def __enter__(self) -> LocalEventBus:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- retention ------------------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> tuple[int, int]:
        """Delete what the bus no longer has to keep; returns (events, deliveries) deleted.

        - archived events received more than `archive_retention_s` ago (EventBridge's archive
          retention: they can no longer be replayed), except those a pending delivery reads
          its payload from (a retry waiting its turn, a backlog);
        - delivered rows of events that arrived more than `delivered_retention_s` ago
          (`stats()` counts deliveries within that period).

        Failed rows are kept: each holds its on-failure record (`failures()`). Rows are
        appended in time order, so the oldest are found by a binary search over the row ids
        rather than through an index on the time, which every put and every delivery would
        have to update for a sweep that runs once a minute. Deletes run in chunks of
        `SWEEP_CHUNK` rows, one short write transaction each.
        """
        at = self._clock() if now is None else now
        before = self._first_at_or_after(
            "bus_deliveries", "id", "created_at", at - self._delivered_retention_s
        )
        deliveries = self._delete_chunked(
            "DELETE FROM bus_deliveries WHERE id IN (SELECT id FROM bus_deliveries "
            "WHERE id < ? AND state = 'delivered' LIMIT ?)",
            before,
        )
        before = self._first_at_or_after(
            "bus_archive", "seq", "received_at", at - self._archive_retention_s
        )
        events = self._delete_chunked(
            "DELETE FROM bus_archive WHERE seq IN (SELECT seq FROM bus_archive WHERE seq < ? "
            "AND id NOT IN (SELECT event_id FROM bus_deliveries WHERE state = 'pending') "
            "LIMIT ?)",
            before,
        )
        if events or deliveries:
            log.info(
                "retention: deleted %d archived event(s), %d delivery row(s)", events, deliveries
            )
        return events, deliveries

    def _first_at_or_after(self, table: str, key: str, column: str, t: float) -> int:
        """The smallest `key` of a row whose `column` (a time) is at or after `t`, or one past
        the largest key: a binary search, each step one lookup on the primary key."""
        with self._lock:
            lo, hi = self._conn.execute(f"SELECT MIN({key}), MAX({key}) FROM {table}").fetchone()
            if lo is None:
                return 0
            hi += 1
            probe = f"SELECT {column} FROM {table} WHERE {key} >= ? ORDER BY {key} LIMIT 1"
            while lo < hi:
                mid = (lo + hi) // 2
                row = self._conn.execute(probe, (mid,)).fetchone()
                if row is None or row[0] >= t:
                    hi = mid
                else:
                    lo = mid + 1
        return int(lo)

    def _delete_chunked(self, sql: str, before: int) -> int:
        total = 0
        while True:
            with self._tx() as c:
                n = c.execute(sql, (before, SWEEP_CHUNK)).rowcount
            total += n
            if n < SWEEP_CHUNK:
                return total

    # -- inspection -----------------------------------------------------------------------------

    def stats(self) -> BusStats:
        """Deliveries by state; `delivered` counts those within `delivered_retention_s`."""
        now = self._clock()
        with self._lock:
            rows = self._conn.execute(
                "SELECT state, claim IS NOT NULL AND due > ? AS held, COUNT(*) AS n "
                "FROM bus_deliveries GROUP BY 1, 2",
                (now,),
            ).fetchall()
        counts = {"pending": 0, "in_flight": 0, "delivered": 0, "failed": 0}
        for r in rows:
            key = "in_flight" if r["state"] == "pending" and r["held"] else r["state"]
            counts[key] += r["n"]
        return BusStats(**counts)

    def archived(
        self,
        *,
        limit: int = 20,
        bus: str | None = None,
        source: str | None = None,
        detail_type: str | None = None,
    ) -> list[dict[str, Any]]:
        """The most recent archived events, newest first, optionally filtered."""
        where, args = [], []
        for column, value in (
            ("bus", bus),
            ("json_extract(event, '$.source')", source),
            ("json_extract(event, '$.\"detail-type\"')", detail_type),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT event FROM bus_archive"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY received_at DESC, rowid DESC LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, (*args, limit)).fetchall()
        return [json.loads(r["event"]) for r in rows]

    def failures(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent failed deliveries: rule, target, condition and on-failure record."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT event_id, bus, rule, target, condition, attempts, failure, finished_at "
                "FROM bus_deliveries WHERE state = 'failed' ORDER BY finished_at DESC, id DESC "
                "LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            {
                "event_id": r["event_id"],
                "bus": r["bus"],
                "rule": r["rule"],
                "target": json.loads(r["target"]),
                "condition": r["condition"],
                "attempts": r["attempts"],
                "record": json.loads(r["failure"]),
                "failed_at": _iso_ms(r["finished_at"]),
            }
            for r in rows
        ]


def _process_alive(pid_text: str) -> bool:
    try:
        pid = int(pid_text)
    except ValueError:
        return True  # not a claim we can judge: wait for its lease
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _error_info(e: BaseException) -> dict[str, Any]:
    """A Python Lambda's error response: errorMessage, errorType, stackTrace."""
    return {
        "errorMessage": str(e),
        "errorType": type(e).__name__,
        "stackTrace": [
            line.rstrip("\n")
            for line in traceback.format_list(traceback.extract_tb(e.__traceback__))
        ],
    }
