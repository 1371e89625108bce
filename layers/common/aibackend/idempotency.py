"""Idempotent handlers: Powertools idempotency on DynamoDB (AWS) or SQLite (local).

Queues deliver at least once, so a handler that writes must not write twice when a message
comes back (a crash, a timeout, a lost delete). Powertools' idempotency utility keeps one
record per idempotency key: `INPROGRESS` while the function runs, `COMPLETED` with its
response after, deleted when it raises. This module adds a SQLite persistence layer with the
DynamoDB layer's semantics, and a unit of work that commits a handler's effect together with
its `COMPLETED` record.

The handler pattern (the same code in both topologies)::

    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor, EventType, process_partial_response)
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function

    from aibackend.idempotency import effects_transaction, persistence_layer
    from aibackend.settings import platform_settings

    store = persistence_layer(platform_settings(), "orders-idempotency")
    config = IdempotencyConfig(event_key_jmespath="messageId", expires_after_seconds=86_400)
    processor = BatchProcessor(event_type=EventType.SQS)

    @idempotent_function(data_keyword_argument="record", config=config, persistence_store=store)
    def process(record: dict) -> dict:
        order = Order.model_validate_json(record["body"])
        with effects_transaction(store) as effects:
            effects.put("orders", order.id, order.model_dump(mode="json"))
        return {"order": order.id}

    def handler(event: dict, context: LambdaContext) -> dict:
        config.register_lambda_context(context)  # first: in-progress records expire with it
        return process_partial_response(
            event=event,
            record_handler=lambda r: process(record=r.raw_event),
            processor=processor,
            context=context,
        )

- `event_key_jmespath`: `messageId` makes each SQS delivery of a message one key; a business
  key in the body (`powertools_json(body).order_id`) also folds duplicate *sends* together.
- `register_lambda_context` must run at the start of every invocation: the in-progress record
  then carries the invocation's deadline (`in_progress_expiration`, epoch ms), and a retry
  after a killed or timed-out invocation takes the key over once that deadline has passed.
  Without it, the key stays blocked until `expires_after_seconds` (one hour by default) and the
  redelivered message fails with `IdempotencyAlreadyInProgressError` until it reaches the DLQ.
  Keep the queue's visibility timeout at or above the function timeout (Lambda requires it).
- A record that raises deletes its in-progress record (and, locally, rolls back its effects),
  so the retry runs it again; `process_partial_response` reports it in `batchItemFailures`.

Exactly once locally, at least once on AWS:

- Local (`SqlitePersistenceLayer`): the unit of work is a transaction on the SQLite file that
  holds the idempotency table. It stays open when the function returns, and Powertools' update
  of the record to `COMPLETED` joins it and commits both at once; if the function raises, both
  roll back. A crash at any point leaves either both (the retry returns the stored response)
  or neither (the retry runs the function again): redelivery never duplicates an effect.
  `effects.sql` is that transaction's connection, for effects that are rows of your own tables.
  That commit is synced (`synchronous=FULL`; the rest of the local state uses `NORMAL`): the
  queue, another database, deletes the message after it, and an OS crash or power loss must
  not keep the delete and lose the effect.
- AWS (`DynamoDBPersistenceLayer`): the effect goes to its own store and DynamoDB holds the
  record, with no transaction across them. A crash after the effect and before the record is
  `COMPLETED` runs the function again, so the effect must be idempotent itself:
  `effects.put(table, key, item)` is a conditional put (`attribute_not_exists(id)`) keyed by a
  value derived from the idempotency key, which a second run turns into a no-op. Effects on
  other services (S3 objects, queue sends, events) need the same care: deterministic keys,
  deduplication ids, or consumers that are idempotent in turn.

Limits worth knowing:

- Keys are `<AWS_LAMBDA_FUNCTION_NAME>.<module>.<function>#<hash>`. In one local process the
  first part is the same for every function, so give each function its own table
  (`persistence_layer(settings, "<function>-idempotency")`) or a `key_prefix`.
- One persistence layer may serve several threads (the local runtime runs a queue's batches
  concurrently): each thread has its own connection and its own unit of work. Between its
  first effects block and its return, an idempotent function holds SQLite's write lock: it
  must not call another idempotent function (its own effects would be rolled back and it
  fails) nor wait on another writer of the same file.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import (
    STATUS_CONSTANTS,
    DataRecord,
)

from aibackend.adapters.local import connect
from aibackend.errors import AibError
from aibackend.settings import PlatformSettings, physical_name

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

log = logging.getLogger("aib.idempotency")

#: Default logical name of the idempotency table (SQLite table locally, DynamoDB table on AWS).
DEFAULT_TABLE = "idempotency"
#: Folder of the local idempotency tables, under the state folder: one SQLite file per table
#: (`<table>.db`, with the effects written in its unit of work), as each is its own DynamoDB
#: table on AWS. Functions in different worker processes then never wait for one file's
#: write lock (one shared file had every event consumer queueing for it twice an event).
LOCAL_DIR = "idempotency"
#: Partition key attribute of effect tables on AWS (also Powertools' idempotency table key).
EFFECT_KEY_ATTR = "id"

_INPROGRESS = STATUS_CONSTANTS["INPROGRESS"]
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,255}")
# Expired records are purged every this many puts of a thread (DynamoDB's TTL does it on AWS).
_PURGE_EVERY = 1_000


class ClaimLostError(AibError):
    """The in-progress record this invocation wrote was taken over before it completed.

    Its deadline passed (the function ran longer than the Lambda context said it could) and
    another invocation claimed the key. The effects are rolled back; the retry returns the other
    invocation's response.
    """

    status = 409
    title = "Idempotency claim lost"


class UnitOfWork(Protocol):
    """Where an idempotent function writes its effects (see the module docs)."""

    def put(self, table: str, key: str, item: Mapping[str, Any]) -> bool:
        """Write `item` under `key` unless the key exists; True if written, False if it was."""
        ...

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        """The item stored under `key`, or None."""
        ...


def _check_table(name: str) -> str:
    if not _TABLE_NAME.fullmatch(name):
        raise ValueError(
            f"table name {name!r} must be 1 to 255 letters, digits, '_', '-' or '.' characters"
        )
    return name


class _Call:
    """One idempotent call under way, from save_inprogress to save_success/delete_record."""

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        #: Powertools hands the same payload object to every hook of one call.
        self.data = data


class _ThreadState(threading.local):
    """One thread's connection and where its idempotent calls stand."""

    def __init__(self) -> None:
        self.conn: sqlite3.Connection | None = None
        #: Idempotent calls under way on this thread, innermost last.
        self.calls: list[_Call] = []
        #: `effects()` blocks open on this thread.
        self.blocks = 0
        #: A transaction is open on `conn`.
        self.in_tx = False
        #: That transaction commits with `synchronous=FULL` (it carries effects).
        self.durable = False
        #: Idempotency key -> owner token of the in-progress records this thread wrote.
        self.claims: dict[str, str] = {}
        self.puts = 0


class SqlitePersistenceLayer(BasePersistenceLayer):
    """Powertools idempotency records in SQLite (WAL), with the DynamoDB layer's semantics.

    Same columns as the DynamoDB layer's attributes (`id`, `status`, `expiration` in epoch
    seconds, `in_progress_expiration` in epoch ms, `data`, `validation`) and the same put
    condition: a key can be claimed when it has no record, when its record expired, or when it
    is in progress past its in-progress deadline. Otherwise the put raises
    `IdempotencyItemAlreadyExistsError` carrying the existing record.

    Stricter than DynamoDB where it costs nothing: completing or deleting a record checks that
    it is still the one this invocation claimed (an owner token), so an invocation that ran
    past its deadline neither overwrites its successor's record nor commits its effects
    (`ClaimLostError`).

    `clock` (epoch seconds) decides expiry; Powertools computes the timestamps it stores from
    the real clock, so a test moves `clock` forward to make records expire.
    """

    def __init__(
        self,
        db_path: Path,
        table: str = DEFAULT_TABLE,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.db_path = db_path
        self.table = _check_table(table)
        self.clock = clock
        self._local = _ThreadState()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        t = self.table
        self._conn().executescript(
            f"""
            CREATE TABLE IF NOT EXISTS "{t}" (
              id TEXT PRIMARY KEY,
              status TEXT NOT NULL,
              expiration INTEGER NOT NULL,
              in_progress_expiration INTEGER,
              data TEXT,
              validation TEXT,
              owner TEXT
            );
            CREATE INDEX IF NOT EXISTS "{t}.expiration" ON "{t}" (expiration);
            CREATE TABLE IF NOT EXISTS effect_items (
              tbl TEXT NOT NULL,
              key TEXT NOT NULL,
              item TEXT NOT NULL,
              PRIMARY KEY (tbl, key)
            ) WITHOUT ROWID;
            """
        )
        self._put_sql = (
            f'INSERT INTO "{t}" (id, status, expiration, in_progress_expiration, data, '
            "validation, owner) VALUES (:id, :status, :expiry, :ip_expiry, NULL, :validation, "
            ":owner) ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
            "expiration = excluded.expiration, "
            "in_progress_expiration = excluded.in_progress_expiration, data = NULL, "
            "validation = excluded.validation, owner = excluded.owner "
            f'WHERE "{t}".expiration < :now OR ("{t}".status = :inprogress '
            f'AND "{t}".in_progress_expiration IS NOT NULL '
            f'AND "{t}".in_progress_expiration < :now_ms)'
        )
        self.purge_expired()

    # -- connections and transactions --------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        st = self._local
        if st.conn is None:
            st.conn = connect(self.db_path)
            with self._conns_lock:
                self._conns.append(st.conn)
        return st.conn

    @contextmanager
    def _write(self, *, join: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction; with `join`, the one `effects()` left open, which it ends."""
        conn = self._conn()
        st = self._local
        if st.in_tx and not join:
            raise RuntimeError(
                "an effects transaction is open on this thread; finish it before this write"
            )
        if not st.in_tx:
            conn.execute("BEGIN IMMEDIATE")
            st.in_tx = True
        try:
            yield conn
        except BaseException:
            self._end(commit=False)
            raise
        self._end(commit=True)

    def _end(self, *, commit: bool) -> None:
        st = self._local
        if st.in_tx:
            st.in_tx = False
            assert st.conn is not None
            if commit:
                st.conn.execute("COMMIT")
            elif st.conn.in_transaction:  # SQLITE_FULL has rolled back already
                st.conn.execute("ROLLBACK")
            if st.durable:
                st.durable = False
                st.conn.execute("PRAGMA synchronous=NORMAL")

    def _pop_call(self, data: Any) -> _Call | None:
        calls = self._local.calls
        for i in range(len(calls) - 1, -1, -1):
            if calls[i].data is data:
                return calls.pop(i)
        return None

    @contextmanager
    def effects(self) -> Iterator[SqliteUnitOfWork]:
        """A unit of work on this layer's database (prefer `effects_transaction(store)`).

        Inside an idempotent function the transaction outlives the block: the `COMPLETED`
        record commits it, a raise rolls it back. Outside one, the block commits on exit. An
        exception leaving the block rolls the whole transaction back. Blocks nest (they share
        the transaction).
        """
        conn = self._conn()
        st = self._local
        opened = not st.in_tx
        if opened:
            # The caller deletes the message once this commits, and the queue is another
            # database: synced, so an OS crash cannot keep the delete and lose the effect.
            conn.execute("PRAGMA synchronous=FULL")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                conn.execute("PRAGMA synchronous=NORMAL")
                raise
            st.in_tx = st.durable = True
        st.blocks += 1
        try:
            yield SqliteUnitOfWork(conn, self._local)
        except BaseException:
            self._end(commit=False)
            raise
        finally:
            st.blocks -= 1
        if opened and not st.calls:
            self._end(commit=True)

    def purge_expired(self) -> int:
        """Delete records past their expiry (DynamoDB's TTL does it on AWS); returns how many."""
        with self._write() as c:
            return c.execute(
                f'DELETE FROM "{self.table}" WHERE expiration < ?', (int(self.clock()),)
            ).rowcount

    def close(self) -> None:
        """Close every thread's connection; an open unit of work rolls back. Only once no
        thread uses the layer: closing a connection under another thread's statement crashes
        the process."""
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._local = _ThreadState()

    # -- the idempotent call's lifecycle -----------------------------------------------------

    def save_inprogress(
        self, data: dict[str, Any], remaining_time_in_millis: int | None = None
    ) -> None:
        st = self._local
        if st.in_tx:
            if st.blocks:
                raise RuntimeError(
                    "an idempotent function was called inside an `effects_transaction` block "
                    "of the same thread; call it before the block, or after the caller returns"
                )
            # Left pending by a call that never completed: it died (a BaseException, a failing
            # output serializer) or, misused, it is calling us between its effects and its
            # return. Its effects cannot commit with our record; if it is alive, it fails at
            # completion (`save_success` no longer knows it).
            log.warning(
                "rolling back the effects of an idempotent call that never completed on this "
                "thread (%d call(s) discarded)",
                len(st.calls),
            )
            self._end(commit=False)
            st.calls.clear()
        super().save_inprogress(data, remaining_time_in_millis)
        st.calls.append(_Call(data))

    def save_success(self, data: dict[str, Any], result: dict[Any, Any]) -> None:
        try:
            if self._pop_call(data) is None:
                error = RuntimeError(
                    "the effects of this idempotent call were rolled back: another idempotent "
                    "call ran on this thread between its effects and its return"
                )
                self._end(commit=False)
                super().delete_record(data, error)
                raise error
            super().save_success(data, result)  # _update_record commits effects + record
            # No idempotency key (nothing recorded): the function succeeded, keep its effects.
            self._end(commit=True)
        except BaseException:
            self._end(commit=False)
            raise

    def delete_record(self, data: dict[str, Any], exception: Exception) -> None:
        self._pop_call(data)
        self._end(commit=False)  # the function raised: none of its effects stay
        super().delete_record(data, exception)

    # -- BasePersistenceLayer ----------------------------------------------------------------

    def _record(self, row: sqlite3.Row) -> DataRecord:
        return DataRecord(
            idempotency_key=row["id"],
            status=row["status"],
            expiry_timestamp=row["expiration"],
            in_progress_expiry_timestamp=row["in_progress_expiration"],
            response_data=row["data"] or "",
            payload_hash=row["validation"] or "",
        )

    def _get_record(self, idempotency_key: str) -> DataRecord:
        row = (
            self._conn()
            .execute(f'SELECT * FROM "{self.table}" WHERE id = ?', (idempotency_key,))
            .fetchone()
        )
        if row is None:
            raise IdempotencyItemNotFoundError
        return self._record(row)

    def _put_record(self, data_record: DataRecord) -> None:
        st = self._local
        now = self.clock()
        owner = secrets.token_hex(8)
        validation = data_record.payload_hash if self.payload_validation_enabled else ""
        with self._write() as c:
            written = c.execute(
                self._put_sql,
                {
                    "id": data_record.idempotency_key,
                    "status": data_record.status,
                    "expiry": data_record.expiry_timestamp,
                    "ip_expiry": data_record.in_progress_expiry_timestamp,
                    "validation": validation or None,
                    "owner": owner,
                    "now": int(now),
                    "now_ms": int(now * 1000),
                    "inprogress": _INPROGRESS,
                },
            ).rowcount
            if not written:
                row = c.execute(
                    f'SELECT * FROM "{self.table}" WHERE id = ?', (data_record.idempotency_key,)
                ).fetchone()
        if not written:
            old = self._record(row)
            # As the DynamoDB layer: a payload that differs from the stored one is an error.
            self._validate_payload(data_payload=data_record, stored_data_record=old)
            raise IdempotencyItemAlreadyExistsError(old_data_record=old)
        st.claims[data_record.idempotency_key] = owner
        st.puts += 1
        if st.puts % _PURGE_EVERY == 0:
            self.purge_expired()

    def _update_record(self, data_record: DataRecord) -> None:
        key = data_record.idempotency_key
        owner = self._local.claims.pop(key, None)
        sql = f'UPDATE "{self.table}" SET status = ?, expiration = ?, data = ?, owner = NULL'
        params: list[Any] = [
            data_record.status,
            data_record.expiry_timestamp,
            data_record.response_data,
        ]
        if self.payload_validation_enabled:
            sql += ", validation = ?"
            params.append(data_record.payload_hash)
        sql += " WHERE id = ?"
        params.append(key)
        if owner is not None:
            sql += " AND owner = ?"
            params.append(owner)
        with self._write(join=True) as c:
            if not c.execute(sql, params).rowcount:
                raise ClaimLostError(
                    f"the in-progress record of {key} was taken over (it outlived its "
                    "in-progress deadline) or removed before the function completed; "
                    "its effects are rolled back"
                )

    def _delete_record(self, data_record: DataRecord) -> None:
        key = data_record.idempotency_key
        owner = self._local.claims.pop(key, None)
        sql = f'DELETE FROM "{self.table}" WHERE id = ?'
        params = [key]
        if owner is not None:  # never delete a successor's claim
            sql += " AND owner = ?"
            params.append(owner)
        with self._write() as c:
            c.execute(sql, params)


class SqliteUnitOfWork:
    """Effects written in the open transaction of a `SqlitePersistenceLayer`."""

    def __init__(self, conn: sqlite3.Connection, state: _ThreadState) -> None:
        self._conn = conn
        self._state = state

    @property
    def sql(self) -> sqlite3.Connection:
        """The transaction's connection (local only): effects as rows of your own tables.

        Never COMMIT or ROLLBACK through it: the layer ends the transaction. Create your
        tables once, up front (a standalone `effects_transaction` block will do).
        """
        if not self._state.in_tx or self._state.conn is not self._conn:
            raise RuntimeError("this unit of work has ended (committed or rolled back)")
        return self._conn

    def put(self, table: str, key: str, item: Mapping[str, Any]) -> bool:
        cur = self.sql.execute(
            "INSERT INTO effect_items (tbl, key, item) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (_check_table(table), key, json.dumps(dict(item), sort_keys=True)),
        )
        return cur.rowcount == 1

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        row = self.sql.execute(
            "SELECT item FROM effect_items WHERE tbl = ? AND key = ?", (table, key)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))


def _from_dynamo(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal: integral ones as int, the others as float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    return value


class DynamoUnitOfWork:
    """Effects as conditional puts on DynamoDB tables: each write happens at most once per key.

    Not a transaction: every put is durable at once, whatever happens to the idempotency
    record afterwards. The table (physical name from `AIB_TABLE_<NAME>`) has a string
    partition key `id`; the item's fields become attributes (floats stored as numbers).
    """

    def __init__(self, client: DynamoDBClient) -> None:
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

        self._client = client
        self._ser = TypeSerializer()
        self._de = TypeDeserializer()

    def put(self, table: str, key: str, item: Mapping[str, Any]) -> bool:
        if EFFECT_KEY_ATTR in item:
            raise ValueError(f"item must not carry {EFFECT_KEY_ATTR!r}: the key goes there")
        native = json.loads(json.dumps(dict(item)), parse_float=Decimal)
        attrs = {k: self._ser.serialize(v) for k, v in native.items()}
        try:
            self._client.put_item(
                TableName=physical_name("table", table),
                Item={EFFECT_KEY_ATTR: {"S": key}, **attrs},
                ConditionExpression="attribute_not_exists(#k)",
                ExpressionAttributeNames={"#k": EFFECT_KEY_ATTR},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        resp = self._client.get_item(
            TableName=physical_name("table", table),
            Key={EFFECT_KEY_ATTR: {"S": key}},
            ConsistentRead=True,
        )
        if "Item" not in resp:
            return None
        return {
            k: _from_dynamo(self._de.deserialize(v))
            for k, v in resp["Item"].items()
            if k != EFFECT_KEY_ATTR
        }


@contextmanager
def effects_transaction(store: BasePersistenceLayer) -> Iterator[UnitOfWork]:
    """The unit of work an idempotent function writes its effects through.

    `store` is the function's persistence layer. Locally (`SqlitePersistenceLayer`) the effects
    commit together with the `COMPLETED` record; on AWS (`DynamoDBPersistenceLayer`) each put is
    a conditional write that a retry turns into a no-op (see the module docs).
    """
    if isinstance(store, SqlitePersistenceLayer):
        with store.effects() as uow:
            yield uow
        return
    from aws_lambda_powertools.utilities.idempotency.persistence.dynamodb import (
        DynamoDBPersistenceLayer,
    )

    if isinstance(store, DynamoDBPersistenceLayer):
        yield DynamoUnitOfWork(store.client)
        return
    raise TypeError(
        f"no unit of work for {type(store).__name__}: use SqlitePersistenceLayer locally or "
        "DynamoDBPersistenceLayer on AWS (aibackend.idempotency.persistence_layer)"
    )


def persistence_layer(
    settings: PlatformSettings, table: str = DEFAULT_TABLE
) -> BasePersistenceLayer:
    """The idempotency store of the configured adapter set.

    Local: table `table` in its own file, `<state_dir>/idempotency/<table>.db`. AWS:
    `DynamoDBPersistenceLayer` on the table named by `AIB_TABLE_<TABLE>` (else `table` itself),
    partition key `id`, TTL attribute `expiration`.
    """
    if settings.adapters == "aws":
        from aws_lambda_powertools.utilities.idempotency.persistence.dynamodb import (
            DynamoDBPersistenceLayer,
        )

        return DynamoDBPersistenceLayer(table_name=physical_name("table", table))
    _check_table(table)
    return SqlitePersistenceLayer(settings.state_dir / LOCAL_DIR / f"{table}.db", table)
