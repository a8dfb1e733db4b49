"""REST: list with filters and pagination, one run, agents, health, OpenAPI."""

from __future__ import annotations


async def _finished(srv, run: str) -> None:
    w = await srv.watcher()
    await w.subscribe(run)
    await w.until_finished(run)
    await w.close()


async def test_runs_are_listed_newest_first_and_paginate(make_server):
    srv = make_server(in_process=True)
    runs = [await srv.start_run({"tokens": 2}) for _ in range(5)]
    for run in runs:
        await _finished(srv, run)
    async with srv.client() as c:
        seen, cursor = [], None
        while True:
            params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (await c.get("/api/runs", params=params)).json()
            seen += [r["id"] for r in page["runs"]]
            cursor = page["next"]
            if cursor is None:
                break
    assert seen == runs[::-1]


async def test_runs_filter_by_status_and_agent(make_server):
    srv = make_server(in_process=True)
    done = await srv.start_run({"tokens": 2})
    await _finished(srv, done)
    running = await srv.start_run({"tokens": 100_000, "rate": 10})
    async with srv.client() as c:
        w = await srv.watcher()
        await w.subscribe(running)
        await w.wait_for(lambda m: m.get("type") == "run.started")
        by_status = (await c.get("/api/runs", params={"status": "running"})).json()["runs"]
        assert [r["id"] for r in by_status] == [running]
        assert [r["id"] for r in (await c.get("/api/runs", params={"status": "succeeded"})).json()["runs"]] == [done]
        assert len((await c.get("/api/runs", params={"agent": "demo"})).json()["runs"]) == 2
        assert (await c.get("/api/runs", params={"agent": "other"})).json()["runs"] == []
        await c.post(f"/api/runs/{running}/cancel")
        await w.until_finished(running)
        await w.close()


async def test_start_answers_202_with_links(server):
    async with server.client() as c:
        r = await c.post("/api/runs", json={"agent": "demo", "input": "hello"})
        assert r.status_code == 202
        body = r.json()
        assert body["status"] == "queued" and body["offline"] is True and body["model"] == "runwatch-offline"
        assert body["events"] == f"/api/runs/{body['id']}/events"
        assert body["stream"] == f"/api/runs/{body['id']}/stream"
        summary = (await c.get(f"/api/runs/{body['id']}")).json()
        assert summary["id"] == body["id"] and summary["input"] == "hello" and summary["tenant"] == "default"


async def test_agents_lists_the_demo_agent_and_its_tools(server):
    async with server.client() as c:
        (demo,) = (await c.get("/api/agents")).json()
    assert demo["name"] == "demo" and demo["model"] == "runwatch-offline"
    assert set(demo["tools"]) == {"calculator", "clock", "wait", "deploy", "list_files", "read_file"}


async def test_health_reports_offline_model_and_load(server):
    async with server.client() as c:
        health = (await c.get("/api/health")).json()
    assert health["status"] == "ok" and health["offline"] is True and health["model"] == "runwatch-offline"


async def test_openapi_describes_the_rest_api(server):
    async with server.client() as c:
        spec = (await c.get("/schema/openapi.json")).json()
    assert {"/api/runs", "/api/runs/{run_id}", "/api/runs/{run_id}/cancel", "/api/agents"} <= set(spec["paths"])
