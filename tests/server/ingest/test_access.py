"""Who may use the ingest API, and what an agent key may not do."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import Server
from tests.harness.identity import make_key
from tests.server.ingest.agent import Agent, step


async def test_a_viewer_or_operator_key_cannot_use_the_ingest_api(server: Server, tenant):
    for role in ("viewer", "operator"):
        key = await make_key(server, tenant, role)
        async with server.client(key) as c:
            r = await c.post("/api/ingest/runs", json={"external_id": "x", "agent": "bot", "input": "hi"})
        assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text


async def test_an_agent_key_reads_lists_starts_and_cancels_nothing(server: Server, agent: Agent):
    run = await agent.run()
    key = agent.key
    async with server.client(key) as c:
        refused = [
            await c.get("/api/runs"),
            await c.get(f"/api/runs/{run}"),
            await c.get(f"/api/runs/{run}/events"),
            await c.post("/api/runs", json={"agent": "demo", "input": "hi"}),
            await c.post(f"/api/runs/{run}/cancel"),
            await c.post(f"/api/runs/{run}/messages", json={"text": "hi"}),
            await c.get("/api/overview"),
        ]
    assert [r.status_code for r in refused] == [403] * len(refused), [r.text for r in refused]
    watcher = await server.watcher(key)
    try:
        feed = await watcher.request({"type": "subscribe", "run": "*"})
        one = await watcher.request({"type": "subscribe", "run": run})
    finally:
        await watcher.close()
    assert feed["type"] == "error" and feed["code"] == "forbidden", feed
    assert one["type"] == "error" and one["code"] == "unknown_run", one


async def test_a_run_answers_only_the_key_that_registered_it(server: Server, agent: Agent, tenant):
    run = await agent.run()
    same_tenant = await Agent.of(server, tenant)
    other_tenant = await Agent.of(server, "another-tenant")
    try:
        for stranger in (same_tenant, other_tenant):
            posted = await stranger.post(run, [{"n": 1, **step(0, "hi")[0]}])
            polled = await stranger.controls(run)
            again = await stranger.register()  # (their own run: fine)
            assert posted.status_code == 404 and posted.json()["code"] == "unknown_run", posted.text
            assert polled.status_code == 404 and polled.json()["code"] == "unknown_run", polled.text
            assert again.status_code == 201
    finally:
        await same_tenant.close()
        await other_tenant.close()


def _keys(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runwatch.api.cli", "keys", *args], capture_output=True, text=True, timeout=60
    )


def test_runwatch_keys_creates_an_agent_key(tmp_path):
    made = _keys("create", "--tenant", "acme", "--role", "agent", "--data-dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().startswith("rw_")
    listed = _keys("list", "--data-dir", str(tmp_path))
    assert "agent" in listed.stdout, listed.stdout
