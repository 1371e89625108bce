"""Local adapters: files and SQLite (WAL) under the state folder, durable across restarts."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from aibackend.adapters.base import (
    Pointer,
    RegistryBase,
    RegistryConflictError,
    Transition,
    lineage_of,
)
from aibackend.errors import InvalidKeyError, ObjectNotFoundError
from aibackend.models.card import ModelCard
from aibackend.ports import Canary, ModelVersion, ObjectInfo, ObjectStore, RegistryEvent

_META_DIR = ".aib-meta"
_MAX_KEY = 1024


def validate_key(key: str) -> str:
    """Refuse keys that are empty, absolute, escape the bucket or hit our metadata folder."""
    if not key or len(key.encode()) > _MAX_KEY:
        raise InvalidKeyError(f"object key must be 1 to {_MAX_KEY} bytes, got {len(key.encode())}")
    if "\\" in key or "\x00" in key:
        raise InvalidKeyError(f"object key {key!r} contains a backslash or NUL byte")
    segments = key.split("/")
    if key.startswith("/") or any(s in ("", ".", "..") for s in segments):
        raise InvalidKeyError(
            f"object key {key!r} must be relative, without empty, '.' or '..' segments"
        )
    if segments[0] == _META_DIR:
        raise InvalidKeyError(f"object key {key!r} uses the reserved prefix {_META_DIR}/")
    return key


def _write_temp(path: Path, data: bytes) -> Path:
    """A complete, synced temporary file beside `path` (removed again if writing fails)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write(path: Path, data: bytes) -> None:
    """Write-then-rename in the same folder, so readers never see a partial file."""
    _write_temp(path, data).replace(path)


class LocalObjectStore:
    """A bucket as a folder: `<root>/<key>`, with content type and metadata in a sidecar."""

    def __init__(self, root: Path, *, bucket: str) -> None:
        self.root = root
        self.bucket = bucket
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _meta_path(self, key: str) -> Path:
        return self.root / _META_DIR / f"{key}.json"

    def path_of(self, key: str) -> Path:
        """Filesystem path of an object (local only: lets the model loader skip a copy)."""
        p = self._path(key)
        if not p.is_file():
            raise ObjectNotFoundError(f"s3://{self.bucket}/{key} does not exist")
        return p

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        path = self._path(key)
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
        meta = {"content_type": content_type, "metadata": metadata or {}, "etag": etag}
        # Both files are complete before either replaces the old ones: a full disk while
        # writing leaves the previous object, bytes and metadata, untouched.
        meta_tmp = _write_temp(self._meta_path(key), json.dumps(meta).encode())
        try:
            data_tmp = _write_temp(path, data)
        except BaseException:
            meta_tmp.unlink(missing_ok=True)
            raise
        meta_tmp.replace(self._meta_path(key))
        data_tmp.replace(path)
        return self.head(key)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError) as e:
            raise ObjectNotFoundError(f"s3://{self.bucket}/{key} does not exist") from e

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError as e:
            raise ObjectNotFoundError(f"s3://{self.bucket}/{key} does not exist") from e
        if not path.is_file():
            raise ObjectNotFoundError(f"s3://{self.bucket}/{key} does not exist")
        meta: dict[str, object] = {}
        mp = self._meta_path(key)
        if mp.is_file() and mp.stat().st_mtime_ns <= st.st_mtime_ns:
            meta = json.loads(mp.read_bytes())
        etag = meta.get("etag")
        if not isinstance(etag, str):  # a file dropped into the folder by hand
            etag = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=etag,
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            content_type=str(meta.get("content_type", "application/octet-stream")),
            metadata=dict(meta.get("metadata", {})),  # type: ignore[call-overload]
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if d != _META_DIR]
            rel = Path(dirpath).relative_to(self.root)
            for fn in filenames:
                if fn.startswith(".") and fn.endswith(".tmp"):
                    continue  # a write in progress
                key = (rel / fn).as_posix() if rel != Path() else fn
                if key.startswith(prefix):
                    found.append(key)
        for key in sorted(found):
            yield self.head(key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
        self._meta_path(key).unlink(missing_ok=True)

    def download_file(self, key: str, dest: Path) -> Path:
        src = self.path_of(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        shutil.copyfile(src, tmp)
        tmp.replace(dest)
        return dest


_SCHEMA = """
CREATE TABLE IF NOT EXISTS model_versions (
  name TEXT NOT NULL,
  version INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  prefix TEXT NOT NULL,
  registered_at TEXT NOT NULL,
  card TEXT NOT NULL,
  PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS model_pointers (
  name TEXT PRIMARY KEY,
  production INTEGER NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS model_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  version INTEGER NOT NULL,
  event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS model_events_name ON model_events (name, seq);
"""
#: Columns added after the first release; a registry.db from before gets them (NULL: defaults).
_ADDED_COLUMNS = {
    "model_versions": ("stage TEXT", "approval TEXT", "gate TEXT", "lineage TEXT"),
    "model_pointers": ("previous TEXT", "canary TEXT"),
}


def _migrate(conn: sqlite3.Connection) -> None:
    for table, columns in _ADDED_COLUMNS.items():
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        for column in columns:
            if column.split()[0] not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


@contextmanager
def write_transaction(
    conn: sqlite3.Connection, lock: threading.Lock
) -> Iterator[sqlite3.Connection]:
    """One write transaction on a shared connection: BEGIN IMMEDIATE takes SQLite's write
    lock up front, so a select followed by an update is atomic across threads and processes."""
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            # On SQLITE_FULL (a full disk) SQLite has rolled back already: keep its error.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


#: How long `connect` keeps trying to switch a database that another process is creating
#: at the same moment into WAL mode (the same as its busy timeout).
CONNECT_TIMEOUT_S = 30.0


def new_id() -> str:
    """A random (version 4) UUID drawn from the interpreter's generator, not `os.urandom`:
    ids of local messages, deliveries and events need to be unique, not unpredictable, and the
    system call (which lets go of the interpreter) cost the runtime's busy process ~6% of its
    time at 1,000 events/s. Each process seeds its generator from the OS at start."""
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


def cache_hot(conn: sqlite3.Connection) -> None:
    """For the files every event goes through (the bus, the queues): a 32 MB page cache
    instead of SQLite's default 2 MB. The bus file grows with its archive (~1.5 KB an event:
    230 MB after 150,000 events). (A memory map measured worse: a page fault holds the
    interpreter lock, where a `pread` lets the other threads run.)"""
    conn.execute("PRAGMA cache_size = -32768")


def connect(path: Path) -> sqlite3.Connection:
    """SQLite in WAL mode: readers never block the writer; survives a crash of the process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, timeout=CONNECT_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    _enter_wal(conn)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.row_factory = sqlite3.Row
    return conn


def _enter_wal(conn: sqlite3.Connection) -> None:
    """`PRAGMA journal_mode=WAL`, retried while it reports the database locked.

    When processes open a database that does not exist yet at the same moment (the workers a
    burst starts, each creating its function's tables), SQLite can answer the switch to WAL
    with SQLITE_BUSY at once, without calling the busy handler that waits for ordinary locks.
    """
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    delay = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() + delay > deadline:
                conn.close()
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


@contextmanager
def connection(path: Path, *, write: bool = False) -> Iterator[sqlite3.Connection]:
    """A short-lived connection (for stores that several processes open: the gateway, stage
    functions, the CLI); `write`: everything inside is one transaction (`write_transaction`),
    which a connection in autocommit mode would otherwise commit statement by statement."""
    conn = connect(path)
    try:
        if write:
            with write_transaction(conn, threading.Lock()):
                yield conn
        else:
            yield conn
    finally:
        conn.close()


class SqliteModelRegistry(RegistryBase):
    """Registry records in SQLite; artifacts in the local `models` bucket."""

    def __init__(self, db_path: Path, store: ObjectStore) -> None:
        super().__init__(store)
        self._conn = connect(db_path)
        self._lock = threading.Lock()
        # Serializes registrations in this process; the primary key refuses a clash with another.
        self._register_lock = threading.Lock()
        self._conn.executescript(_SCHEMA)
        with self._tx() as c:  # under the write lock: two processes never both add a column
            _migrate(c)

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._conn, self._lock)

    def _next_version(self, name: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM model_versions WHERE name = ?", (name,)
            ).fetchone()
        return int(row[0]) + 1

    def register(
        self, source_dir: Path, *, parent_version: int | None = None, actor: str = "aib"
    ) -> ModelVersion:
        with self._register_lock:
            return super().register(source_dir, parent_version=parent_version, actor=actor)

    def _put_record(self, mv: ModelVersion, event: RegistryEvent) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO model_versions (name, version, sha256, prefix, registered_at, card,"
                " stage, approval, gate, lineage) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                (
                    mv.name,
                    mv.version,
                    mv.sha256,
                    mv.prefix,
                    mv.registered_at.isoformat(),
                    mv.card.model_dump_json(),
                    mv.stage,
                    mv.approval.model_dump_json(),
                    mv.lineage.model_dump_json(),
                ),
            )
            _insert_event(c, event)

    #: A version with the production pointer's view of it: records from before stages existed
    #: (stage NULL) read as `production` when the pointer names them, else `candidate`.
    _SELECT = (
        "SELECT v.*, p.production AS pointer FROM model_versions v "
        "LEFT JOIN model_pointers p ON p.name = v.name"
    )

    def _row(self, row: sqlite3.Row) -> ModelVersion:
        card = json.loads(row["card"])
        stage = row["stage"] or ("production" if row["pointer"] == row["version"] else "candidate")
        data: dict[str, object] = {
            "name": row["name"],
            "version": row["version"],
            "sha256": row["sha256"],
            "prefix": row["prefix"],
            "registered_at": row["registered_at"],
            "card": card,
            "stage": stage,
        }
        for column in ("approval", "gate", "lineage"):
            if row[column] is not None:
                data[column] = json.loads(row[column])
        if row["lineage"] is None:
            data["lineage"] = lineage_of(
                ModelCard.model_validate(card), None, f"s3://{self.store.bucket}/{row['prefix']}"
            ).model_dump()
        return ModelVersion.model_validate(data)

    def _get_record(self, name: str, version: int) -> ModelVersion | None:
        with self._lock:
            row = self._conn.execute(
                f"{self._SELECT} WHERE v.name = ? AND v.version = ?", (name, version)
            ).fetchone()
        return None if row is None else self._row(row)

    def list_models(self) -> list[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT name FROM model_versions ORDER BY name"
            ).fetchall()
        return [r[0] for r in rows]

    def list_versions(self, name: str) -> list[ModelVersion]:
        with self._lock:
            rows = self._conn.execute(
                f"{self._SELECT} WHERE v.name = ? ORDER BY v.version", (name,)
            ).fetchall()
        return [self._row(r) for r in rows]

    def _get_pointer(self, name: str) -> Pointer | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT production, previous, canary FROM model_pointers WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            return None
        return Pointer(
            production=int(row[0]),
            previous=tuple(json.loads(row[1] or "[]")),
            canary=None if row[2] is None else Canary.model_validate_json(row[2]),
        )

    def _apply(self, t: Transition) -> None:
        with self._tx() as c:
            if t.pointer is not None:
                row = c.execute(
                    "SELECT production, canary FROM model_pointers WHERE name = ?", (t.name,)
                ).fetchone()
                current = None if row is None else int(row[0])
                if current != t.pointer.expected:
                    raise RegistryConflictError(
                        f"{t.name}: production moved to v{current} while this change was "
                        f"made from v{t.pointer.expected}; nothing changed, look and retry"
                    )
                raw = None if row is None else row[1]
                active = None if raw is None else Canary.model_validate_json(raw).id
                if active != t.pointer.expected_canary:
                    raise RegistryConflictError(
                        f"{t.name}: a canary started or ended while this change was made; "
                        "nothing changed, look (`aib models canary`) and retry"
                    )
                new = t.pointer.new
                c.execute(
                    "INSERT INTO model_pointers (name, production, updated_at, previous, canary) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                    "production = excluded.production, updated_at = excluded.updated_at, "
                    "previous = excluded.previous, canary = excluded.canary",
                    (
                        t.name,
                        new.production,
                        datetime.now(UTC).isoformat(),
                        json.dumps(list(new.previous)),
                        None if new.canary is None else new.canary.model_dump_json(),
                    ),
                )
            for version, state in t.states.items():
                c.execute(
                    "UPDATE model_versions SET stage = ?, approval = ?, gate = ? "
                    "WHERE name = ? AND version = ?",
                    (
                        state.stage,
                        state.approval.model_dump_json(),
                        None if state.gate is None else state.gate.model_dump_json(),
                        t.name,
                        version,
                    ),
                )
            for event in t.events:
                _insert_event(c, event)

    def _events(self, name: str) -> list[RegistryEvent]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT event FROM model_events WHERE name = ? ORDER BY seq", (name,)
            ).fetchall()
        return [RegistryEvent.model_validate_json(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:  # never under a statement of another thread (see LocalKeyStore.close)
            self._conn.close()


def _insert_event(c: sqlite3.Connection, event: RegistryEvent) -> None:
    c.execute(
        "INSERT INTO model_events (name, version, event) VALUES (?, ?, ?)",
        (event.name, event.version, event.model_dump_json()),
    )
