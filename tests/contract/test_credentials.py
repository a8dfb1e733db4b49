"""The credentials contract, run over every backend: SQLite and PostgreSQL (a database of the test's own)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from runwatch.agents.store.credentials import Credential, PostgresCredentials, SQLiteCredentials
from runwatch.agents.store.migrations import migrate
from tests.harness.services import postgres_database


@pytest.fixture(params=["sqlite", "postgres"])
async def credentials(request, tmp_path):
    if request.param == "sqlite":
        c = SQLiteCredentials(tmp_path / "runs.sqlite3")
        await c.open()
        yield c
        await c.close()
        return
    async with postgres_database() as url:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)  # the store's migrations make the credentials' tables
        finally:
            await conn.close()
        c = PostgresCredentials(url)
        await c.open()
        yield c
        await c.close()


def _made(id: str, kind: str = "key", *, at: float = 1.0, expires_at: float | None = None) -> Credential:
    principal = None if kind == "key" else '{"tenant": "acme"}'
    return Credential(
        id=id, kind=kind, tenant="acme", role="operator", created_at=at, expires_at=expires_at, principal=principal
    )


async def test_a_key_is_found_by_its_hash_until_revoked(credentials):
    await credentials.add(_made("k1", at=1.0), "h1")
    await credentials.add(_made("k2", at=2.0), "h2")
    found = await credentials.find("h1", now=time.time())
    assert found == _made("k1", at=1.0)
    assert await credentials.find("h1", now=time.time(), kind="session") is None
    assert await credentials.find("nope", now=time.time()) is None
    assert await credentials.revoke("k1", now=5.0) is True
    assert await credentials.revoke("k1", now=6.0) is False  # already
    assert await credentials.revoke("nope", now=6.0) is False
    assert await credentials.find("h1", now=time.time()) is None
    keys = await credentials.keys()
    assert [(k.id, k.revoked_at) for k in keys] == [("k2", None), ("k1", 5.0)]  # newest first, revoked kept
    assert await credentials.revoked(["k1", "k2", "gone"]) == {"k1", "gone"}
    assert await credentials.revoked([]) == set()


async def test_a_session_expires_and_ends_at_log_out(credentials):
    now = time.time()
    await credentials.add(_made("s1", "session", at=now, expires_at=now + 60), "hs")
    assert (await credentials.find("hs", now=now, kind="session")).id == "s1"
    assert await credentials.find("hs", now=now + 61, kind="session") is None  # expired
    await credentials.revoke_secret("hs", "session", now=now)
    assert await credentials.find("hs", now=now, kind="session") is None


async def test_a_code_is_consumed_once_even_by_many_at_once(credentials):
    now = time.time()
    await credentials.add(_made("c1", "code", at=now, expires_at=now + 60), "hc")
    await credentials.add(_made("c2", "code", at=now, expires_at=now + 60), "hc2")
    got = await asyncio.gather(*(credentials.consume("hc", "code", now) for _ in range(8)))
    assert [g.principal for g in got if g is not None] == ['{"tenant": "acme"}']
    assert await credentials.consume("hc", "code", now) is None
    assert await credentials.consume("hc2", "ticket", now) is None  # not a ticket
    assert await credentials.consume("hc2", "code", now + 61) is None  # expired
    await credentials.revoke_secret("hc2", "code", now)
    assert await credentials.consume("hc2", "code", now) is None  # revoked


async def test_expired_sessions_codes_and_tickets_are_purged_when_another_is_made(credentials):
    long_ago = time.time() - 3600
    await credentials.add(_made("old", "session", at=long_ago, expires_at=long_ago + 1), "ho")
    assert await credentials.find("ho", now=long_ago, kind="session") is not None
    await credentials.add(_made("t1", "ticket", at=time.time(), expires_at=time.time() + 30), "ht")
    assert await credentials.find("ho", now=long_ago, kind="session") is None  # deleted, not only expired


async def test_a_server_secret_is_set_once_and_then_kept(credentials):
    first = await credentials.secret("signing", "a")
    again = await asyncio.gather(*(credentials.secret("signing", f"b{i}") for i in range(4)))
    assert first == "a" and again == ["a"] * 4
    assert await credentials.secret("other", "c") == "c"
