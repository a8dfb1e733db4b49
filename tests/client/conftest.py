"""Fixtures of the client's tests: an agent key of a fresh tenant on the shared server, and the
client (sync and async) holding it. The ingest tests' fixtures are reused as they are."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from runwatch.client import AsyncRunwatch, Runwatch
from tests.conftest import Server
from tests.harness.identity import make_key
from tests.server.ingest.conftest import tenant

__all__ = ["tenant"]


@pytest.fixture
async def key(server: Server, tenant: str) -> str:
    return await make_key(server, tenant, "agent", "sdk-bot")


@pytest.fixture
def rw(server: Server, key: str) -> Iterator[Runwatch]:
    client = Runwatch(server.url, key)
    yield client
    client.close()


@pytest.fixture
async def arw(server: Server, key: str) -> AsyncIterator[AsyncRunwatch]:
    client = AsyncRunwatch(server.url, key)
    yield client
    await client.aclose()
