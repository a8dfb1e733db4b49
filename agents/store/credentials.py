"""Credentials: API keys (long-lived), dashboard sessions (until they expire or log out), one-time
login codes and WebSocket tickets (single use), and the server secrets every instance shares —
kept in the same database as the runs.

Only a SHA-256 hash of each secret is stored: the secret is shown once, when it is made. Lookups
are by that hash. ``consume`` is atomic (one ``UPDATE … RETURNING``): of two instances presenting
the same code or ticket at once, exactly one gets it.

The SQL is written once (``SQLCredentials``, in the backend's ``Dialect``); the SQLite and
PostgreSQL backends only open their database and run a statement.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import msgspec

from runwatch.agents.store.dialect import POSTGRES, SQLITE, Dialect, Params


class Credential(msgspec.Struct, kw_only=True):
    id: str
    #: What it is: ``key`` (an API key), ``session`` (the dashboard's), ``code`` (a one-time login
    #: code) or ``ticket`` (a WebSocket ticket).
    kind: str
    tenant: str
    role: str
    name: str = ""
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None
    #: For codes and tickets: the principal (JSON) they stand for.
    principal: str | None = None


_COLUMNS = "id, kind, tenant, role, name, created_at, expires_at, revoked_at, principal"


def _row(row: Sequence[Any] | None) -> Credential | None:
    if row is None:
        return None
    return Credential(
        id=row[0],
        kind=row[1],
        tenant=row[2],
        role=row[3],
        name=row[4],
        created_at=row[5],
        expires_at=row[6],
        revoked_at=row[7],
        principal=row[8],
    )


class Credentials(Protocol):
    """Where credentials live. Every method is safe to call from many instances at once."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def add(self, credential: Credential, secret_hash: str) -> None:
        """Store a new credential under the hash of its secret."""
        ...

    async def find(self, secret_hash: str, now: float, kind: str = "key") -> Credential | None:
        """The API key (or dashboard session) with that hash, if it is neither revoked nor expired."""
        ...

    async def revoke_secret(self, secret_hash: str, kind: str, now: float) -> None:
        """Revoke the credential with that hash (a dashboard session, at log out)."""
        ...

    async def consume(self, secret_hash: str, kind: str, now: float) -> Credential | None:
        """Use up a single-use credential (a code or a ticket): it is returned once, then never again."""
        ...

    async def keys(self) -> list[Credential]:
        """Every API key, revoked ones included, newest first."""
        ...

    async def revoke(self, key_id: str, now: float) -> bool:
        """Revoke an API key; False if there is no such key (or it already was)."""
        ...

    async def revoked(self, key_ids: list[str]) -> set[str]:
        """Which of these keys are revoked (or gone)."""
        ...

    async def secret(self, name: str, make: str) -> str:
        """The shared secret called ``name``, set to ``make`` if it does not exist yet."""
        ...


SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS credentials (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    hash TEXT UNIQUE NOT NULL,
    tenant TEXT NOT NULL,
    role TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL,
    used_at REAL,
    principal TEXT
);
CREATE INDEX IF NOT EXISTS credentials_by_kind ON credentials (kind, created_at);
CREATE TABLE IF NOT EXISTS server_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

#: Expired sessions, codes and tickets are deleted this long after they expire.
PURGE_AFTER = 60.0


class SQLCredentials(ABC):
    """``Credentials`` in a SQL database, every statement written once in the backend's dialect: a
    backend opens, closes and runs one statement (``_fetch``), no more."""

    dialect: Dialect

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def _fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        """Run one statement; its rows (none for a write without ``RETURNING``)."""

    async def add(self, credential: Credential, secret_hash: str) -> None:
        c = credential
        if c.kind != "key":
            await self._fetch(
                f"DELETE FROM credentials WHERE kind != 'key' AND expires_at < {self.dialect.param(1)}",
                time.time() - PURGE_AFTER,
            )
        params = Params(self.dialect)
        values = (c.id, c.kind, secret_hash, c.tenant, c.role, c.name, c.created_at, c.expires_at, c.principal)
        await self._fetch(
            "INSERT INTO credentials (id, kind, hash, tenant, role, name, created_at, expires_at, principal)"
            f" VALUES ({', '.join(map(params, values))})",
            *params.values,
        )

    async def find(self, secret_hash: str, now: float, kind: str = "key") -> Credential | None:
        p = self.dialect.param
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM credentials WHERE hash = {p(1)} AND kind = {p(2)} AND revoked_at IS NULL"
            f" AND (expires_at IS NULL OR expires_at > {p(3)})",
            secret_hash,
            kind,
            now,
        )
        return _row(rows[0]) if rows else None

    async def revoke_secret(self, secret_hash: str, kind: str, now: float) -> None:
        p = self.dialect.param
        await self._fetch(
            f"UPDATE credentials SET revoked_at = {p(1)} WHERE hash = {p(2)} AND kind = {p(3)} AND revoked_at IS NULL",
            now,
            secret_hash,
            kind,
        )

    async def consume(self, secret_hash: str, kind: str, now: float) -> Credential | None:
        p = self.dialect.param
        rows = await self._fetch(
            f"UPDATE credentials SET used_at = {p(1)} WHERE hash = {p(2)} AND kind = {p(3)} AND used_at IS NULL"
            f" AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > {p(1)}) RETURNING {_COLUMNS}",
            now,
            secret_hash,
            kind,
        )
        return _row(rows[0]) if rows else None

    async def keys(self) -> list[Credential]:
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM credentials WHERE kind = 'key' ORDER BY created_at DESC")
        return [_row(r) for r in rows]  # type: ignore[misc]

    async def revoke(self, key_id: str, now: float) -> bool:
        p = self.dialect.param
        rows = await self._fetch(
            f"UPDATE credentials SET revoked_at = {p(1)} WHERE id = {p(2)} AND kind = 'key' AND revoked_at IS NULL"
            " RETURNING id",
            now,
            key_id,
        )
        return bool(rows)

    async def revoked(self, key_ids: list[str]) -> set[str]:
        if not key_ids:
            return set()
        params = Params(self.dialect)
        among = self.dialect.among("id", key_ids, params)
        rows = await self._fetch(f"SELECT id FROM credentials WHERE {among} AND revoked_at IS NULL", *params.values)
        return set(key_ids) - {r[0] for r in rows}

    async def secret(self, name: str, make: str) -> str:
        p = self.dialect.param
        await self._fetch(
            f"INSERT INTO server_secrets (name, value) VALUES ({p(1)}, {p(2)}) ON CONFLICT DO NOTHING", name, make
        )
        rows = await self._fetch(f"SELECT value FROM server_secrets WHERE name = {p(1)}", name)
        return rows[0][0]


class SQLiteCredentials(SQLCredentials):
    """In the SQLite file of the store, on a connection of its own (calls are few and small)."""

    dialect = SQLITE

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def open(self) -> None:
        def connect() -> None:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(SQLITE_SCHEMA)
            self._db = db

        await asyncio.to_thread(connect)

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        def run() -> list[Sequence[Any]]:
            assert self._db is not None, "credentials are not open"
            with self._lock:
                return self._db.execute(sql, args).fetchall()

        return await asyncio.to_thread(run)


class PostgresCredentials(SQLCredentials):
    """In the PostgreSQL database of the store (its tables come with migration 2)."""

    dialect = POSTGRES

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=2)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        assert self._pool is not None, "credentials are not open"
        return await self._pool.fetch(sql, *args)
