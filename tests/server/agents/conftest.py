"""Fixtures of the Agents page's endpoint tests: a fresh tenant per test (on the shared server), its
operator and viewer keys, and an external agent (a key of the ``agent`` role) of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import Server
from tests.harness.identity import make_key
from tests.server.ingest.agent import Agent
from tests.server.ingest.conftest import tenant

__all__ = ["tenant"]


@pytest.fixture
async def operator(server: Server, tenant: str) -> str:
    return await make_key(server, tenant, "operator", "ada")


@pytest.fixture
async def viewer(server: Server, tenant: str) -> str:
    return await make_key(server, tenant, "viewer", "vera")


@pytest.fixture
async def bot(server: Server, tenant: str) -> AsyncIterator[Agent]:
    agent = await Agent.of(server, tenant, "billing-bot")
    yield agent
    await agent.close()
