"""GET /api/agents/activity: every agent that reported in a window — runwatch's own and external
ones — with its runs, error rate, durations, last heartbeat and state, for its tenant's readers."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import Server
from tests.harness.identity import make_key
from tests.harness.waiting import eventually
from tests.server.ingest.agent import Agent, numbered, step

PATH = "/api/agents/activity"


async def activity(server: Server, key: str | None = None, **params: Any) -> dict[str, dict]:
    async with server.client(key) as c:
        r = await c.get(PATH, params=params)
    assert r.status_code == 200, r.text
    return {a["name"]: a for a in r.json()["agents"]}


async def own_run(server: Server, key: str, user_input: str) -> dict:
    """A run of runwatch's demo agent, started by ``key`` and watched to its end: its summary."""
    w = await server.watcher(key)
    try:
        async with server.client(key) as c:
            r = await c.post("/api/runs", json={"agent": "demo", "input": user_input})
            assert r.status_code == 202, r.text
            run = r.json()["id"]
            await w.subscribe(run)
            await w.until_finished(run)
            return (await c.get(f"/api/runs/{run}")).json()
    finally:
        await w.close()


async def external_run(bot: Agent, end: dict | None) -> str:
    """A run ``bot`` reports: one step, then ``end`` (a ``run.finished``'s fields; None: it goes on)."""
    run = await bot.run(agent="billing-bot")
    events = step(0, "hello")
    if end is not None:
        events.append({"type": "run.finished", **end})
    assert (await bot.post(run, numbered(events))).status_code == 200
    return run


async def test_the_figures_are_those_of_each_agents_runs(server: Server, operator: str, viewer: str, bot: Agent):
    own = [await own_run(server, operator, '{"tokens": 3}') for _ in range(2)]
    for end in ({"status": "succeeded"}, {"status": "failed", "error": "boom"}, {"status": "cancelled"}):
        await external_run(bot, end)
    heard = time.time()
    await external_run(bot, None)  # (running)
    agents = await activity(server, viewer, window=900)
    assert set(agents) == {"demo", "billing-bot"}
    demo, billing = agents["demo"], agents["billing-bot"]
    assert (demo["external"], demo["state"], demo["running"]) == (False, "idle", 0)
    assert (demo["runs"], demo["succeeded"], demo["error_rate"]) == (2, 2, 0.0)
    durations = sorted(r["finished_at"] - r["started_at"] for r in own)
    assert demo["duration"]["p50"] == round(durations[0], 4) and demo["duration"]["p95"] == round(durations[1], 4)
    assert demo["last_heartbeat"] == round(max(r["finished_at"] for r in own), 3)
    assert (billing["external"], billing["state"], billing["runs"], billing["running"]) == (True, "active", 4, 1)
    assert (billing["succeeded"], billing["failed"], billing["cancelled"]) == (1, 1, 1)
    assert billing["error_rate"] == round(1 / 3, 4)
    assert heard <= billing["last_heartbeat"] <= time.time()


async def test_an_agent_silent_past_its_lease_is_stale_until_it_is_heard_from_again(
    server: Server, viewer: str, bot: Agent
):
    run = await bot.run(agent="billing-bot", lease_seconds=1)
    assert (await bot.post(run, numbered(step(0, "then silence")))).status_code == 200

    async def state() -> str:
        return (await activity(server, viewer))["billing-bot"]["state"]

    async def stale() -> bool:
        return await state() == "stale"

    await eventually(stale, timeout=5, what="the agent to be stale")
    async with server.client() as c:
        lost = (await c.get(f"/api/runs/{run}")).json()
    assert (lost["status"], lost["error"]) == ("failed", "agent_lost")
    await bot.run(agent="billing-bot")  # back: a new run
    assert await state() == "active"


async def test_another_tenants_agents_never_appear(server: Server, viewer: str, bot: Agent):
    await external_run(bot, {"status": "succeeded"})
    stranger = await Agent.of(server, "another-tenant")
    try:
        run = await stranger.run(agent="spy-bot")
        ended = await stranger.post(run, numbered([{"type": "run.finished", "status": "succeeded"}]))
        assert ended.status_code == 200
    finally:
        await stranger.close()
    assert "spy-bot" not in await activity(server, viewer)
    assert "spy-bot" not in await activity(server, viewer, tenant="another-tenant")  # (an admin's choice only)
    everyone = await activity(server)  # the admin: every tenant
    assert {"spy-bot", "billing-bot"} <= set(everyone)
    assert set(await activity(server, tenant="another-tenant")) >= {"spy-bot"}
    assert "billing-bot" not in await activity(server, tenant="another-tenant")


async def test_a_viewer_may_read_it_and_an_agent_key_may_not(server: Server, tenant: str, bot: Agent):
    viewer = await make_key(server, tenant, "viewer")
    async with server.client(viewer) as c:
        assert (await c.get(PATH)).status_code == 200
    async with server.client(bot.key) as c:
        r = await c.get(PATH)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


async def test_without_a_credential_it_is_401(server: Server):
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
        r = await c.get(PATH)
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"


async def test_a_window_out_of_range_is_refused(server: Server, viewer: str):
    async with server.client(viewer) as c:
        r = await c.get(PATH, params={"window": 10})
    assert r.status_code == 400 and r.json()["code"] == "bad_request"


async def test_the_endpoint_is_in_the_openapi_schema(server: Server):
    async with server.client() as c:
        spec = (await c.get("/schema/openapi.json")).json()
    operation = spec["paths"][PATH]["get"]
    assert {"window", "tenant"} <= {p["name"] for p in operation["parameters"]}
    assert {"200", "401", "403"} <= set(operation["responses"])
