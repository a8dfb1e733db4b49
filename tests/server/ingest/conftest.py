"""Fixtures of the ingest API's tests: a fresh tenant per test, and an agent with a key of it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from tests.conftest import Server
from tests.server.ingest.agent import Agent


@pytest.fixture
def tenant() -> str:
    """A tenant of this test alone (on the shared server: no other test's runs are in it)."""
    return f"t{secrets.token_hex(4)}"


@pytest.fixture
async def agent(server: Server, tenant: str) -> AsyncIterator[Agent]:
    bot = await Agent.of(server, tenant)
    yield bot
    await bot.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def store_env(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, str]]:
    """The settings of a server on each store in turn: SQLite (its data folder), then a PostgreSQL
    database of the test's own (one instance, no Redis)."""
    if request.param == "sqlite":
        yield {}
        return
    from tests.harness.services import postgres_database

    async with postgres_database() as url:
        yield {"RUNWATCH_DATABASE_URL": url}
