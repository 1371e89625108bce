"""WAL checkpoints of the state folder's SQLite databases, in a thread of their own.

Every local table, queue, ledger and idempotency store is a SQLite database in WAL mode
(`synchronous=NORMAL`: a commit appends to the log and does not sync). Left to itself, SQLite
checkpoints a log inside whichever commit takes it past 1,000 pages: that commit copies the
log into the database and syncs both, tens to hundreds of milliseconds on this machine's disk,
while its connection's lock is held. Under `aib dev` load that was a capture message's commit
inside `fraud_score`, and the requests queued behind it (kernel stack: `fdatasync` in
`COMMIT`). `WalCheckpoints` checkpoints every database whose log has passed `min_bytes`, once
a second, in its own thread (`PRAGMA wal_checkpoint(PASSIVE)`: writers and readers carry on
meanwhile), so the logs stay under SQLite's threshold and the copying and syncing happen here.
What stays in a commit: the first commit into a restarted log syncs the log's header. It finds
the databases by looking, not by being told, so databases opened by worker processes
(`aib dev --isolate`) and ones created later are covered.

Where it looks: `*.db` in the state folder and one folder below it (`tables/`, `idempotency/`,
`monitoring/`, `auth/`...), never under `buckets/` (objects, whatever their names).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("aib.runtime")

#: How often the logs are looked at.
EVERY_S = 1.0
#: Logs smaller than this are left alone: half of SQLite's own threshold (1,000 pages of 4 KB), so
#: the log is checkpointed here before a commit would, and restarted no more often than SQLite
#: would restart it (the first commit into a restarted log syncs its header).
MIN_BYTES = 2 * 1024 * 1024
#: Folders of the state folder that hold objects, not databases.
SKIPPED = frozenset({"buckets"})


class WalCheckpoints:
    def __init__(
        self, state_dir: Path, *, every_s: float = EVERY_S, min_bytes: int = MIN_BYTES
    ) -> None:
        self.state_dir = state_dir
        self.every_s = every_s
        self.min_bytes = min_bytes
        self._conns: dict[Path, sqlite3.Connection] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def databases(self) -> list[Path]:
        """The databases it watches, as of now."""
        found = list(self.state_dir.glob("*.db"))
        for sub in self.state_dir.iterdir() if self.state_dir.is_dir() else ():
            if sub.is_dir() and sub.name not in SKIPPED and not sub.name.startswith("."):
                found.extend(sub.glob("*.db"))
        return sorted(found)

    def run_once(self) -> dict[Path, tuple[int, int]]:
        """Checkpoint each database whose WAL is at least `min_bytes`: path -> (frames in the
        log, frames checkpointed), as SQLite reports them."""
        done: dict[Path, tuple[int, int]] = {}
        present = self.databases()
        for db in present:
            try:
                if Path(f"{db}-wal").stat().st_size < self.min_bytes:
                    continue
            except FileNotFoundError:
                continue
            try:
                conn = self._conns.get(db)
                if conn is None:
                    conn = self._conns[db] = sqlite3.connect(db, check_same_thread=False)
                    conn.execute("PRAGMA busy_timeout=1000")
                _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                done[db] = (int(frames), int(copied))
            except sqlite3.Error as e:  # deleted, locked past the timeout: next time
                log.debug("WAL checkpoint of %s skipped: %s", db, e)
                self._forget(db)
        for gone in set(self._conns) - set(present):
            self._forget(gone)
        return done

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="aib-wal-checkpoints", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for db in list(self._conns):
            self._forget(db)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.run_once()
            except Exception:  # never let housekeeping take the runtime down
                log.exception("WAL checkpoints failed; retrying")

    def _forget(self, db: Path) -> None:
        conn = self._conns.pop(db, None)
        if conn is not None:
            conn.close()
