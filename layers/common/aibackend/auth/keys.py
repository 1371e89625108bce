"""API keys: generated here, stored only as SHA-256 hashes, each bound to a usage plan.

A key is `aib_` plus 32 random bytes (URL-safe base64): 256 bits, so a fast hash is safe to
store (nobody can brute-force the preimage) and a lookup is one indexed read. The secret is
shown once, when the key is created; `key_id` (`ak_` plus 8 hex digits) names it afterwards.

Local keys live in SQLite under the state folder; on AWS in the `api-keys` data table (its
partition key `id` is the hash), with the same key registered in API Gateway under the plan's
usage plan so that API Gateway meters it (see `aibackend.auth.aws`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from aibackend.adapters.local import connect
from aibackend.errors import ConfigError

#: Every key starts so: secret scanners (and people) recognise one in a log or a commit.
KEY_PREFIX = "aib_"
#: API Gateway refuses API key values shorter than 20 characters; ours are 47.
_SECRET_BYTES = 32
#: Lookups remembered by `LocalKeyStore` (then it starts over).
_CACHED_KEYS = 10_000


class KeyNotFoundError(ConfigError):
    """No key with that id."""


@dataclass(frozen=True)
class ApiKey:
    """A key's record (never its secret)."""

    key_id: str
    name: str
    plan: str
    created_at: datetime
    revoked_at: datetime | None = None
    #: API Gateway's id of the same key (AWS only), so revoking disables it there too.
    gateway_key_id: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key(name: str, plan: str) -> tuple[ApiKey, str]:
    """A fresh key record and its secret."""
    secret = KEY_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)
    key = ApiKey(
        key_id=f"ak_{secrets.token_hex(4)}", name=name, plan=plan, created_at=datetime.now(UTC)
    )
    return key, secret


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX) and len(value) > len(KEY_PREFIX) + 20


class KeyStore(Protocol):
    def create(self, name: str, plan: str) -> tuple[ApiKey, str]: ...
    def lookup(self, secret: str) -> ApiKey | None: ...
    def list(self) -> list[ApiKey]: ...
    def revoke(self, key_id: str) -> ApiKey: ...


def check_plan(plan: str, plans: Mapping[str, object]) -> None:
    if plan not in plans:
        raise ConfigError(f"unknown plan {plan!r}; plans: {', '.join(sorted(plans))}")


def _ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class LocalKeyStore:
    """Keys and their daily usage in `<state>/auth/keys.db` (SQLite, WAL).

    The gateway and the `aib keys` CLI open it from different processes. Lookups are served
    from memory: the gateway calls `lookup` on its event loop, where a SQLite query per request
    would hand the GIL to the worker thread running a function and wait up to a switch
    interval to get it back. A change made through another connection (`aib keys revoke`)
    is seen within `refresh_s` (SQLite's `data_version` moves); one made through this store
    at once.
    """

    def __init__(self, path: Path, plans: Mapping[str, object], *, refresh_s: float = 0.1) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.plans = plans
        self.refresh_s = refresh_s
        self._cache: dict[str, ApiKey | None] = {}
        self._data_version = -1
        self._checked_at = -float("inf")
        self._lock = threading.Lock()
        self._conn = connect(path)
        self._conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS api_keys (
                hash TEXT PRIMARY KEY,
                key_id TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL,
                plan TEXT NOT NULL,
                created_at TEXT NOT NULL,
                revoked_at TEXT
            );
            CREATE TABLE IF NOT EXISTS usage (
                key_id TEXT NOT NULL,
                day TEXT NOT NULL,
                requests INTEGER NOT NULL,
                PRIMARY KEY (key_id, day)
            );
            """
        )

    def close(self) -> None:
        # Under the lock: closing a connection while another thread runs a statement on it
        # crashes the process (sqlite3 frees what that statement still uses).
        with self._lock:
            self._conn.close()

    def create(self, name: str, plan: str) -> tuple[ApiKey, str]:
        check_plan(plan, self.plans)
        key, secret = new_key(name, plan)
        with self._lock:
            self._conn.execute(
                "INSERT INTO api_keys (hash, key_id, name, plan, created_at) VALUES (?,?,?,?,?)",
                (hash_key(secret), key.key_id, name, plan, key.created_at.isoformat()),
            )
            self._cache.clear()
        return key, secret

    def lookup(self, secret: str) -> ApiKey | None:
        digest = hash_key(secret)
        now = time.monotonic()
        if now - self._checked_at >= self.refresh_s:
            with self._lock:
                version = self._conn.execute("PRAGMA data_version").fetchone()[0]
                if version != self._data_version:
                    self._cache.clear()
                    self._data_version = version
                self._checked_at = now
        if digest in self._cache:
            return self._cache[digest]
        found = self._query(digest)
        if len(self._cache) >= _CACHED_KEYS:  # unknown keys are remembered too: bound them
            self._cache.clear()
        self._cache[digest] = found
        return found

    def _query(self, digest: str) -> ApiKey | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT hash, key_id, name, plan, created_at, revoked_at FROM api_keys "
                "WHERE hash = ?",
                (digest,),
            ).fetchone()
        # The index found the row; compare in constant time anyway, as for any credential.
        if row is None or not hmac.compare_digest(row[0], digest):
            return None
        return self._key(row[1:])

    def list(self) -> list[ApiKey]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT key_id, name, plan, created_at, revoked_at FROM api_keys "
                "ORDER BY created_at"
            ).fetchall()
        return [self._key(r) for r in rows]

    def get(self, key_id: str) -> ApiKey:
        for k in self.list():
            if k.key_id == key_id:
                return k
        raise KeyNotFoundError(f"no API key {key_id!r}; `aib keys list` shows them")

    def revoke(self, key_id: str) -> ApiKey:
        key = self.get(key_id)
        if key.revoked:
            return key
        now = datetime.now(UTC)
        with self._lock:
            self._conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ?", (now.isoformat(), key_id)
            )
            self._cache.clear()
        return replace(key, revoked_at=now)

    def add_usage(self, day: str, counts: Mapping[str, int]) -> None:
        """Add requests counted in memory since the last flush (one transaction)."""
        if not counts:
            return
        with self._lock:
            self._conn.executemany(
                "INSERT INTO usage (key_id, day, requests) VALUES (?, ?, ?) "
                "ON CONFLICT (key_id, day) DO UPDATE SET requests = requests + excluded.requests",
                [(k, day, n) for k, n in counts.items()],
            )

    def usage(self, day: str) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT key_id, requests FROM usage WHERE day = ?", (day,)
            ).fetchall()
        return dict(rows)

    @staticmethod
    def _key(row: tuple[str, str, str, str, str | None]) -> ApiKey:
        key_id, name, plan, created, revoked = row
        created_at = _ts(created)
        assert created_at is not None
        return ApiKey(key_id, name, plan, created_at, _ts(revoked))
