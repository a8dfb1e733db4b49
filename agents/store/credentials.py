"""Credentials: API keys (long-lived), dashboard sessions (until they expire or log out), one-time
login codes and WebSocket tickets (single use), and the server secrets every instance shares —
kept in the same database as the runs.

Only a SHA-256 hash of each secret is stored: the secret is shown once, when it is made. Lookups
are by that hash. ``consume`` is atomic (one ``UPDATE … RETURNING``): of two instances presenting
the same code or ticket at once, exactly one gets it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

import asyncpg
import msgspec


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


def _row(row: tuple | asyncpg.Record | None) -> Credential | None:
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


class SQLiteCredentials:
    """In the SQLite file of the store, on a connection of its own (calls are few and small)."""

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

    async def _call(self, sql: str, args: tuple = (), *, many: bool = False) -> list[tuple]:
        def run() -> list[tuple]:
            assert self._db is not None, "credentials are not open"
            with self._lock:
                return self._db.execute(sql, args).fetchall()

        return await asyncio.to_thread(run)

    async def add(self, credential: Credential, secret_hash: str) -> None:
        c = credential
        if c.kind != "key":
            await self._call(
                "DELETE FROM credentials WHERE kind != 'key' AND expires_at < ?", (time.time() - PURGE_AFTER,)
            )
        await self._call(
            "INSERT INTO credentials (id, kind, hash, tenant, role, name, created_at, expires_at, principal)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (c.id, c.kind, secret_hash, c.tenant, c.role, c.name, c.created_at, c.expires_at, c.principal),
        )

    async def find(self, secret_hash: str, now: float, kind: str = "key") -> Credential | None:
        rows = await self._call(
            f"SELECT {_COLUMNS} FROM credentials WHERE hash = ? AND kind = ? AND revoked_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > ?)",
            (secret_hash, kind, now),
        )
        return _row(rows[0]) if rows else None

    async def revoke_secret(self, secret_hash: str, kind: str, now: float) -> None:
        await self._call(
            "UPDATE credentials SET revoked_at = ? WHERE hash = ? AND kind = ? AND revoked_at IS NULL",
            (now, secret_hash, kind),
        )

    async def consume(self, secret_hash: str, kind: str, now: float) -> Credential | None:
        rows = await self._call(
            "UPDATE credentials SET used_at = ? WHERE hash = ? AND kind = ? AND used_at IS NULL"
            f" AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?) RETURNING {_COLUMNS}",
            (now, secret_hash, kind, now),
        )
        return _row(rows[0]) if rows else None

    async def keys(self) -> list[Credential]:
        rows = await self._call(f"SELECT {_COLUMNS} FROM credentials WHERE kind = 'key' ORDER BY created_at DESC")
        return [_row(r) for r in rows]  # type: ignore[misc]

    async def revoke(self, key_id: str, now: float) -> bool:
        rows = await self._call(
            "UPDATE credentials SET revoked_at = ? WHERE id = ? AND kind = 'key' AND revoked_at IS NULL RETURNING id",
            (now, key_id),
        )
        return bool(rows)

    async def revoked(self, key_ids: list[str]) -> set[str]:
        if not key_ids:
            return set()
        marks = ",".join("?" * len(key_ids))
        rows = await self._call(
            f"SELECT id FROM credentials WHERE id IN ({marks}) AND revoked_at IS NULL", tuple(key_ids)
        )
        return set(key_ids) - {r[0] for r in rows}

    async def secret(self, name: str, make: str) -> str:
        await self._call("INSERT OR IGNORE INTO server_secrets (name, value) VALUES (?, ?)", (name, make))
        rows = await self._call("SELECT value FROM server_secrets WHERE name = ?", (name,))
        return rows[0][0]


class PostgresCredentials:
    """In the PostgreSQL database of the store (its tables come with migration 2)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=2)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def _db(self) -> asyncpg.Pool:
        assert self._pool is not None, "credentials are not open"
        return self._pool

    async def add(self, credential: Credential, secret_hash: str) -> None:
        c = credential
        if c.kind != "key":
            await self._db.execute(
                "DELETE FROM credentials WHERE kind != 'key' AND expires_at < $1", time.time() - PURGE_AFTER
            )
        await self._db.execute(
            "INSERT INTO credentials (id, kind, hash, tenant, role, name, created_at, expires_at, principal)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            c.id,
            c.kind,
            secret_hash,
            c.tenant,
            c.role,
            c.name,
            c.created_at,
            c.expires_at,
            c.principal,
        )

    async def find(self, secret_hash: str, now: float, kind: str = "key") -> Credential | None:
        return _row(
            await self._db.fetchrow(
                f"SELECT {_COLUMNS} FROM credentials WHERE hash = $1 AND kind = $3 AND revoked_at IS NULL"
                " AND (expires_at IS NULL OR expires_at > $2)",
                secret_hash,
                now,
                kind,
            )
        )

    async def revoke_secret(self, secret_hash: str, kind: str, now: float) -> None:
        await self._db.execute(
            "UPDATE credentials SET revoked_at = $1 WHERE hash = $2 AND kind = $3 AND revoked_at IS NULL",
            now,
            secret_hash,
            kind,
        )

    async def consume(self, secret_hash: str, kind: str, now: float) -> Credential | None:
        return _row(
            await self._db.fetchrow(
                "UPDATE credentials SET used_at = $1 WHERE hash = $2 AND kind = $3 AND used_at IS NULL"
                f" AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1) RETURNING {_COLUMNS}",
                now,
                secret_hash,
                kind,
            )
        )

    async def keys(self) -> list[Credential]:
        rows = await self._db.fetch(f"SELECT {_COLUMNS} FROM credentials WHERE kind = 'key' ORDER BY created_at DESC")
        return [_row(r) for r in rows]  # type: ignore[misc]

    async def revoke(self, key_id: str, now: float) -> bool:
        done = await self._db.fetchval(
            "UPDATE credentials SET revoked_at = $1 WHERE id = $2 AND kind = 'key' AND revoked_at IS NULL RETURNING id",
            now,
            key_id,
        )
        return done is not None

    async def revoked(self, key_ids: list[str]) -> set[str]:
        if not key_ids:
            return set()
        rows = await self._db.fetch(
            "SELECT id FROM credentials WHERE id = ANY($1::text[]) AND revoked_at IS NULL", key_ids
        )
        return set(key_ids) - {r[0] for r in rows}

    async def secret(self, name: str, make: str) -> str:
        await self._db.execute(
            "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING", name, make
        )
        return await self._db.fetchval("SELECT value FROM server_secrets WHERE name = $1", name)
