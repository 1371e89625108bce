"""Closing a local store whose one SQLite connection other threads share (`aib dev` stopping
while a request looks up its API key, or while the runtime's watcher flushes key usage).

sqlite3 frees what a running statement still uses when another thread closes its connection:
the process dies of a segmentation fault (a CI run lost a test worker that way). Each store
closes under the lock its statements run under; these tests run in a subprocess, so that the
crash they guard against fails them instead of taking the test worker down.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = """
import sqlite3, sys, threading, time
from pathlib import Path

state = Path(sys.argv[1])
{make}
# A statement long enough to still be running when the store is closed.
SLOW = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) "
SLOW += "SELECT count(*) FROM c"
started = threading.Event()


def statement() -> None:
    with store._lock:  # as each of the store's methods runs its statements
        started.set()
        store._conn.execute(SLOW).fetchone()


t = threading.Thread(target=statement)
t.start()
started.wait()
time.sleep(0.05)
store.close()
t.join()
try:
    {call}
except sqlite3.ProgrammingError as e:
    print("after close:", e)
"""

STORES = {
    "api keys": (
        "from aibackend.auth.keys import LocalKeyStore\n"
        "store = LocalKeyStore(state / 'keys.db', {'dev': {}})",
        "store.list()",
    ),
    "event ledger": (
        "from aibackend.ledger import SqliteEventLedger\n"
        "store = SqliteEventLedger(state / 'ledger.db')",
        "store.handled(['e-1'])",
    ),
    "model registry": (
        "from aibackend.adapters.local import LocalObjectStore, SqliteModelRegistry\n"
        "store = SqliteModelRegistry(state / 'registry.db', "
        "LocalObjectStore(state / 'models', bucket='models'))",
        "store.list_models()",
    ),
}


@pytest.mark.parametrize("name", list(STORES))
def test_closing_a_store_while_another_thread_runs_a_statement_keeps_the_process_alive(
    tmp_path: Path, name: str
) -> None:
    # GIVEN a store whose connection is running a statement in another thread
    make, call = STORES[name]
    script = SCRIPT.format(make=textwrap.dedent(make), call=call)
    # WHEN the store is closed meanwhile, and used once more afterwards
    done = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # THEN the close waited for the statement (no segmentation fault), and the late call is
    # told the database is closed
    assert done.returncode == 0, done.stderr[-3000:]
    assert "after close: Cannot operate on a closed database" in done.stdout, done.stdout
