"""The store fixture the store's contract tests and the figures tests share: each test runs on
SQLite and on PostgreSQL (a database of its own)."""

from __future__ import annotations

import pytest

from runwatch.agents.store import PostgresStore, SQLiteStore
from tests.harness.services import postgres_database


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        s = SQLiteStore(tmp_path / "runs.sqlite3", max_pending=100)
        await s.open()
        yield s
        await s.close()
        return
    async with postgres_database() as url:
        s = PostgresStore(url, max_pending=100)
        await s.open()
        yield s
        await s.close()
