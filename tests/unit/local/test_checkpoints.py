"""WAL checkpoints off the commit path: which databases, and that their logs are copied."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from aibackend.local.checkpoints import WalCheckpoints


def _db(path: Path, rows: int) -> sqlite3.Connection:
    """A WAL database that never checkpoints by itself, holding `rows` rows of 1 KB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (v BLOB)")
    for _ in range(rows):
        conn.execute("INSERT INTO t VALUES (?)", (b"x" * 1024,))
        conn.commit()
    return conn


def test_grown_logs_are_checkpointed_and_small_ones_and_buckets_left_alone(tmp_path: Path) -> None:
    # GIVEN a queue database with a ~1 MB log, a table with a tiny one, and a file named like
    # a database inside a bucket
    queues = _db(tmp_path / "queues.db", 1_000)
    small = _db(tmp_path / "tables" / "small.db", 2)
    _db(tmp_path / "buckets" / "data" / "upload.db", 1_000)
    cp = WalCheckpoints(tmp_path, min_bytes=256 * 1024)
    # WHEN it runs
    done = cp.run_once()
    # THEN only the grown log was checkpointed, all of its frames copied into the database
    assert list(done) == [tmp_path / "queues.db"]
    frames, copied = done[tmp_path / "queues.db"]
    assert frames > 256 and copied == frames
    # AND the bucket's file is not one of its databases
    assert cp.databases() == [tmp_path / "queues.db", tmp_path / "tables" / "small.db"]
    # AND the writers carry on, and what they wrote is all there
    queues.execute("INSERT INTO t VALUES (x'00')")
    queues.commit()
    assert queues.execute("SELECT COUNT(*) FROM t").fetchone() == (1_001,)
    assert small.execute("SELECT COUNT(*) FROM t").fetchone() == (2,)
    cp.stop()


def test_a_database_removed_between_runs_is_forgotten(tmp_path: Path) -> None:
    conn = _db(tmp_path / "tables" / "gone.db", 400)
    cp = WalCheckpoints(tmp_path, min_bytes=1)
    assert tmp_path / "tables" / "gone.db" in cp.run_once()
    conn.close()
    for f in (tmp_path / "tables").iterdir():
        f.unlink()
    assert cp.run_once() == {}
    assert cp.databases() == []
    cp.stop()
