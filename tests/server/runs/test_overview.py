"""GET /api/overview: the window's figures from the store, and every instance's capacity."""

from __future__ import annotations

import pytest

from tests.harness.identity import make_key
from tests.harness.waiting import eventually
from tests.server.runs.prices import PRICED


async def test_the_overview_counts_the_windows_runs_and_their_figures(make_server):
    server = make_server({**PRICED, "RUNWATCH_INSTANCE": "solo"}, in_process=True)
    finished = [await server.run_to_end({"tokens": 30, "tool_calls": 1}) for _ in range(3)]
    w = await server.watcher()
    long = await server.start_run({"tokens": 100_000, "rate": 20})
    await w.subscribe(long)
    await w.wait_for(lambda m: m.get("run_id") == long and m.get("type") == "token")
    async with server.client() as c:
        assert (await c.post(f"/api/runs/{long}/cancel")).status_code == 202
        await w.until_finished(long)
        body = (await c.get("/api/overview", params={"window": 900})).json()
        summaries = [(await c.get(f"/api/runs/{e[0]['run_id']}")).json() for e in finished]
    await w.close()
    assert body["runs"]["succeeded"] == 3 and body["runs"]["cancelled"] == 1 and body["runs"]["total"] == 4
    assert body["success_rate"] == 0.75
    assert sum(b["runs"] for b in body["per_minute"]) == 4
    assert len(body["per_minute"]) == round(900 / body["bucket"])
    assert body["until"] - body["since"] >= 900 and body["since"] < body["now"] <= body["until"]
    (model,) = body["models"]
    assert model["model"] == "runwatch-offline" and model["runs"] == 4 and model["tokens_per_second"] > 0
    (agent,) = body["agents"]
    cancelled_cost = (await server_cost(server, long)) or 0.0
    assert agent["cost"] == pytest.approx(sum(s["cost"] for s in summaries) + cancelled_cost)
    assert 0 < body["duration"]["p50"] <= body["duration"]["p95"]
    assert 0 < body["ttft"]["p50"] <= body["ttft"]["p95"]
    assert body["queue"] == {"queued": 0, "running": 0, "waiting": 0}
    (instance,) = body["instances"]
    assert instance["instance"] == "solo" and instance["slots"] >= 1 and instance["running"] == 0


async def server_cost(server, run_id: str) -> float | None:
    async with server.client() as c:
        return (await c.get(f"/api/runs/{run_id}")).json()["cost"]


async def test_the_overview_shows_the_queue_and_a_running_run_now(make_server):
    server = make_server({"RUNWATCH_MAX_RUNNING": "1"}, in_process=True)
    w = await server.watcher()
    first = await server.start_run({"tokens": 100_000, "rate": 20})
    await w.subscribe(first)
    await w.wait_for(lambda m: m.get("run_id") == first and m.get("type") == "token")
    second = await server.start_run({"tokens": 3})
    async with server.client() as c:
        body = (await c.get("/api/overview")).json()
        assert body["queue"] == {"queued": 1, "running": 1, "waiting": 0}
        assert body["instances"][0]["running"] == 1 and body["instances"][0]["slots"] == 1
        for run in (first, second):
            await c.post(f"/api/runs/{run}/cancel")
    await w.close()


async def test_a_tenant_sees_its_own_runs_and_no_instances(server):
    viewer = await make_key(server, "acme", "viewer")
    await server.run_to_end({"tokens": 2})  # the default tenant's
    async with server.client(viewer) as c:
        body = (await c.get("/api/overview")).json()
    assert body["runs"]["total"] == 0 and body["models"] == [] and body["instances"] == []


async def test_a_window_out_of_range_is_refused(server):
    async with server.client() as c:
        r = await c.get("/api/overview", params={"window": 10})
    assert r.status_code == 400


async def test_every_instance_of_a_cluster_shows_its_capacity(cluster):
    servers = cluster(2)
    async with servers[0].client() as c:

        async def both_shown() -> bool:  # each announces at its lease renewal (a quarter lease apart)
            names = [i["instance"] for i in (await c.get("/api/overview")).json()["instances"]]
            return sorted(names) == ["i0", "i1"]

        await eventually(both_shown, what="instances i0 and i1 in the overview")
