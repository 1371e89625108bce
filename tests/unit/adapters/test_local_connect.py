"""`connect`: the SQLite connection every local store opens, from several processes at once."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from aibackend.adapters.local import connect

PROCESSES = 4
ROUNDS = 15


def _open_and_write(path: str, start_at: float) -> None:
    while time.time() < start_at:  # all of them at the same moment
        pass
    conn = connect(Path(path))
    conn.execute("CREATE TABLE IF NOT EXISTS t (pid INTEGER)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.close()


def test_processes_creating_one_database_at_once_all_get_a_wal_connection(
    tmp_path: Path,
) -> None:
    # GIVEN databases that do not exist yet (as a fresh state folder when a burst starts
    # several workers of one function, each creating its tables at INIT)
    ctx = multiprocessing.get_context("fork")
    failed = 0
    for i in range(ROUNDS):
        path = tmp_path / f"fresh-{i}.db"
        start_at = time.time() + 0.1
        # WHEN four processes open each of them at the same moment
        procs = [
            ctx.Process(target=_open_and_write, args=(str(path), start_at))
            for _ in range(PROCESSES)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        failed += sum(1 for p in procs if p.exitcode != 0)
        # THEN every one of them wrote its row, and the database is in WAL mode
        conn = connect(path)
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == sum(
            1 for p in procs if p.exitcode == 0
        )
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
    # (before the retry, SQLite answered some of them "database is locked" at once:
    # 10 of 160 processes here)
    assert failed == 0
