"""Registering an external run: once per (tenant, external_id), published as runwatch's own runs are."""

from __future__ import annotations

from tests.server.ingest.agent import Agent, stored


async def test_registering_again_answers_the_same_run_and_makes_no_second_one(server, agent):
    first = await agent.register("order-42")
    again = await agent.register("order-42")
    assert first.status_code == 201 and again.status_code == 200, (first.text, again.text)
    run = first.json()["run_id"]
    assert again.json() == {"run_id": run, "lease_seconds": 30.0, "last_n": 0, "status": "running"}
    events = await stored(server, run)
    assert [e["type"] for e in events] == ["run.queued", "run.started"]


async def test_an_external_run_is_published_as_external_with_who_registered_it(server, agent, tenant):
    run = await agent.run(capabilities={"cancel": True, "approve": False, "message": False})
    queued, started = await stored(server, run)
    assert queued["external"] is True and started["external"] is True
    assert queued["tenant"] == tenant and queued["agent"] == "their-agent" and queued["by"]["id"].startswith("key:")
    assert queued["capabilities"] == {"cancel": True, "approve": False, "message": False}
    async with server.client() as c:
        summary = (await c.get(f"/api/runs/{run}")).json()
    assert summary["external"] is True and summary["status"] == "running" and summary["tenant"] == tenant


async def test_the_same_external_id_in_another_tenant_is_another_run(server, agent):
    other = await Agent.of(server, "elsewhere")
    try:
        mine = await agent.run(external_id="shared-id")
        theirs = await other.run(external_id="shared-id")
    finally:
        await other.close()
    assert mine != theirs


async def test_a_name_of_the_server_s_own_agents_is_refused(agent):
    r = await agent.register(agent="demo")
    assert r.status_code == 400 and r.json()["code"] == "bad_request" and "own agents" in r.json()["detail"]
