"""A small external agent for the tests: raw HTTP to the ingest API, its events numbered by hand
(the SDK's batcher comes later), and what to compare the stored run with."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from runwatch.agents.ingest.wire import AGENT_TYPES
from tests.conftest import Server
from tests.harness.identity import make_key

_ids = itertools.count(1)


def numbered(events: list[dict[str, Any]], start: int = 1) -> list[dict[str, Any]]:
    """``events`` with ``n`` from ``start`` on."""
    return [{"n": n, **e} for n, e in enumerate(events, start)]


def tokens(*texts: str) -> list[dict[str, Any]]:
    return [{"type": "token", "text": t, "deltas": 1} for t in texts]


def step(index: int, *texts: str) -> list[dict[str, Any]]:
    """One model step that streams ``texts`` and stops."""
    usage = {"input_tokens": 5, "output_tokens": len(texts), "estimated": False}
    return [
        {"type": "step.started", "index": index, "model": "their-model"},
        *tokens(*texts),
        {"type": "step.finished", "index": index, "finish_reason": "stop", "usage": usage},
    ]


def sent_by_agent(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored events of the types an agent sends."""
    return [e for e in stored if e["type"] in AGENT_TYPES]


def assert_stored_as_sent(stored: list[dict[str, Any]], sent: list[dict[str, Any]]) -> None:
    """Every event the agent sent is stored once, in its order, with the fields it sent."""
    mine = sent_by_agent(stored)
    assert len(mine) == len(sent), f"stored {len(mine)} agent events for {len(sent)} sent"
    for got, want in zip(mine, sent, strict=True):
        fields = {k: v for k, v in want.items() if k != "n"}
        assert {k: got.get(k) for k in fields} == fields, (got, want)


class Agent:
    """An agent elsewhere, as the ingest API sees it: one key, one server (``at`` moves it)."""

    def __init__(self, server: Server, key: str) -> None:
        self.key = key
        self.http = self._client(server)

    def _client(self, server: Server) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=server.url, timeout=35, headers={"Authorization": f"Bearer {self.key}"})

    @classmethod
    async def of(cls, server: Server, tenant: str, name: str = "") -> Agent:
        """An agent with a new ``agent`` key of ``tenant``."""
        return cls(server, await make_key(server, tenant, "agent", name or f"bot-{next(_ids)}"))

    async def at(self, server: Server) -> None:
        """Talk to ``server`` from now on (the same data, restarted on another port)."""
        await self.http.aclose()
        self.http = self._client(server)

    async def register(self, external_id: str | None = None, **fields: Any) -> httpx.Response:
        body = {
            "external_id": external_id or f"ext-{next(_ids)}",
            "agent": "their-agent",
            "input": "summarise the quarter",
            "capabilities": {"cancel": True, "approve": True, "message": True},
            **fields,
        }
        return await self.http.post("/api/ingest/runs", json=body)

    async def run(self, **fields: Any) -> str:
        """A new run's id."""
        r = await self.register(**fields)
        assert r.status_code == 201, r.text
        return r.json()["run_id"]

    async def post(self, run_id: str, events: list[dict[str, Any]], **body: Any) -> httpx.Response:
        return await self.http.post(f"/api/ingest/runs/{run_id}/events", json={"events": events, **body})

    async def post_many(self, parts: dict[str, list[dict[str, Any]]]) -> httpx.Response:
        """Each run's events in one request (``POST /api/ingest/events``)."""
        runs = [{"run_id": run_id, "events": events} for run_id, events in parts.items()]
        return await self.http.post("/api/ingest/events", json={"runs": runs})

    async def controls(self, run_id: str, after: int = 0, wait: float = 0) -> httpx.Response:
        return await self.http.get(f"/api/ingest/runs/{run_id}/controls", params={"after": after, "wait": wait})

    async def close(self) -> None:
        await self.http.aclose()


async def stored(server: Server, run_id: str) -> list[dict[str, Any]]:
    """The run's events as the store holds them (the admin's replay)."""
    async with server.client() as c:
        r = await c.get(f"/api/runs/{run_id}/events", params={"limit": 5000})
        assert r.status_code == 200, r.text
        return r.json()["events"]
