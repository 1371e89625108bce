"""Crash recovery: a queue worker killed with SIGKILL at the worst moments writes every effect once.

The worker is a real SQS handler (Powertools batch processing + idempotency) fed by a
`SqliteQueueService` the way Lambda's event source mapping feeds it: batches of 10, the
events built by `sqs_event`, successes deleted from `batchItemFailures`. Its effect is a plain
INSERT into an `effects` table with no unique constraint, so a duplicate effect would show as a
second row. The idempotency record and the effect live in the same SQLite file and commit in
one transaction.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aibackend.adapters.local_queue import SqliteQueueService
from aibackend.ports import QueueConfig

pytestmark = pytest.mark.slow

MESSAGES = 10_000
QUEUE = "work"
DLQ = "work-dlq"
MAX_RECEIVES = 3
CRASH_POINTS = ("CRASH_AFTER_INPROGRESS", "CRASH_IN_EFFECT", "CRASH_AFTER_EFFECT")

WORKER = r'''
"""Consume the queue until it is empty; SIGKILL itself at the injected point."""
import json
import os
import signal
import sys
from pathlib import Path

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function

from aibackend.adapters.local_queue import SqliteQueueService
from aibackend.events.shapes import sqs_event
from aibackend.idempotency import SqlitePersistenceLayer, effects_transaction
from aibackend.local.context import LocalLambdaContext
from aibackend.local.triggers import failed_ids

state = Path(sys.argv[1])
crash_at = {
    name: int(os.environ.get(name, "0"))
    for name in ("CRASH_AFTER_INPROGRESS", "CRASH_IN_EFFECT", "CRASH_AFTER_EFFECT")
}
seen = dict.fromkeys(crash_at, 0)
summary = {"batches": 0, "records": 0, "bodies": 0}


def crash_point(name):
    seen[name] += 1
    if seen[name] == crash_at[name]:
        os.kill(os.getpid(), signal.SIGKILL)


store = SqlitePersistenceLayer(state / "idempotency.db")
config = IdempotencyConfig(event_key_jmespath="messageId", expires_after_seconds=3600)
processor = BatchProcessor(event_type=EventType.SQS)


@idempotent_function(data_keyword_argument="record", config=config, persistence_store=store)
def process(record):
    summary["bodies"] += 1
    crash_point("CRASH_AFTER_INPROGRESS")  # the in-progress record is committed
    body = json.loads(record["body"])
    if body.get("poison"):
        raise ValueError("poison message")
    with effects_transaction(store) as effects:
        effects.sql.execute(
            "INSERT INTO effects (message_id, n) VALUES (?, ?)", (record["messageId"], body["n"])
        )
        crash_point("CRASH_IN_EFFECT")  # the effect is written, nothing is committed
    return {"n": body["n"]}


def record_handler(record):
    summary["records"] += 1
    result = process(record=record.raw_event)
    crash_point("CRASH_AFTER_EFFECT")  # effect + COMPLETED committed, the message not deleted
    return result


def handler(event, context):
    config.register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )


queue = SqliteQueueService(state / "queues.db").get("work")
while True:
    batch = queue.receive(10, wait_s=0.5)
    if not batch:
        stats = queue.stats()
        if stats.visible == stats.in_flight == stats.delayed == 0:
            break
        continue
    # Lambda's rule: the function timeout stays within the queue's visibility timeout.
    context = LocalLambdaContext(function_name="crash-worker", memory_limit_in_mb=128, timeout_s=1)
    try:
        failed = failed_ids(handler(sqs_event(batch, queue_name="work"), context), batch)
    except Exception:  # every record failed: Lambda retries the whole batch
        failed = {m.message_id for m in batch}
    done = [m.receipt_handle for m in batch if m.message_id not in failed]
    if done:
        queue.delete_batch(done)
    summary["batches"] += 1
print(json.dumps(summary))
'''

# (crash point, n): the n-th time this run passes that point, it kills itself.
CRASHES = [
    ("CRASH_AFTER_INPROGRESS", 1234),  # mid-batch, after the claim, before the effect
    ("CRASH_IN_EFFECT", 2001),  # first record of a batch, effect written, not committed
    ("CRASH_AFTER_EFFECT", 1500),  # last record of a batch: 10 effects done, none deleted
    ("CRASH_AFTER_INPROGRESS", 1),  # the first record a fresh process sees
    ("CRASH_AFTER_EFFECT", 7),  # mid-batch, after the commit, before the delete
    ("CRASH_IN_EFFECT", 777),
]


def run_worker(
    script: Path, state: Path, crash: tuple[str, int] | None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in CRASH_POINTS}
    if crash is not None:
        env[crash[0]] = str(crash[1])
    return subprocess.run(
        [sys.executable, str(script), str(state)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_every_effect_is_written_exactly_once_across_sigkills(tmp_path: Path) -> None:
    # GIVEN 10,000 messages and one poison message on a queue with a DLQ after 3 receives,
    # and an effects table next to the idempotency records
    state = tmp_path / "state"
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    with SqliteQueueService(state / "queues.db") as queues:
        queue = queues.ensure(
            QueueConfig(
                name=QUEUE,
                visibility_timeout_s=1,
                max_receive_count=MAX_RECEIVES,
                dead_letter_queue=DLQ,
            )
        )
        sent: dict[str, int] = {}
        for start in range(0, MESSAGES, 10):
            bodies = [json.dumps({"n": n}) for n in range(start, start + 10)]
            ids = queue.send_batch(bodies)
            sent.update(zip(ids, range(start, start + 10), strict=True))
            if start == MESSAGES // 2:
                poison_id = queue.send(json.dumps({"poison": True}))
    db = state / "idempotency.db"
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TABLE effects (seq INTEGER PRIMARY KEY, message_id TEXT NOT NULL, n INTEGER)"
    )
    conn.commit()
    conn.close()

    # WHEN the worker is killed at each injected point in turn, restarted after every kill,
    # and finally runs without crashes until the queue is empty
    in_progress_left = 0
    for crash in CRASHES:
        proc = run_worker(script, state, crash)
        assert proc.returncode == -signal.SIGKILL, (crash, proc.returncode, proc.stderr[-3000:])
        if crash[0] != "CRASH_AFTER_EFFECT":
            in_progress_left += 1  # the killed record's claim stays until its deadline
        claims = query(db, "SELECT COUNT(*) FROM idempotency WHERE status = 'INPROGRESS'")
        assert claims == [(in_progress_left,)], crash
    final = run_worker(script, state, None)
    assert final.returncode == 0, final.stderr[-3000:]
    summary = json.loads(final.stdout.strip().splitlines()[-1])

    # THEN every message has exactly one effect row, none is missing, none is doubled
    assert query(db, "SELECT COUNT(*), COUNT(DISTINCT message_id) FROM effects") == [
        (MESSAGES, MESSAGES)
    ]
    assert dict(query(db, "SELECT message_id, n FROM effects")) == sent
    # ... every message has a COMPLETED record, and the poison message none
    assert query(db, "SELECT status, COUNT(*) FROM idempotency GROUP BY status") == [
        ("COMPLETED", MESSAGES)
    ]
    # ... redeliveries of committed messages (at least the two killed after the commit) were
    # answered from the stored records without running the body again
    assert summary["records"] - summary["bodies"] >= 2, summary
    # ... the poison message is in the DLQ after max receive count; the queue is empty
    with SqliteQueueService(state / "queues.db") as queues:
        main = queues.get(QUEUE).stats()
        assert (main.visible, main.in_flight, main.delayed) == (0, 0, 0)
        dead = queues.get(DLQ).receive(10)
    assert [(m.message_id, json.loads(m.body)) for m in dead] == [(poison_id, {"poison": True})]
    assert int(dead[0].attributes["ApproximateReceiveCount"]) == MAX_RECEIVES + 1
