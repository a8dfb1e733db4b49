"""Limits and quotas: runs started per minute per principal, runs active per tenant, sockets per
principal. They refuse with 429 + Retry-After (or close 1013), recover, count in metrics, and hold
across instances when Redis is on."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.conftest import Server
from tests.harness.identity import make_key
from tests.harness.services import REDIS, drop_prefix, new_prefix, postgres_database
from tests.harness.waiting import eventually

QUICK = '{"tokens": 1}'
LONG = '{"tokens": 100000, "rate": 50}'


async def _start(client: httpx.AsyncClient, text: str = QUICK) -> httpx.Response:
    return await client.post("/api/runs", json={"agent": "demo", "input": text})


async def _sample(server: Server, series: str) -> float:
    """The value of one series on the server's /metrics (``name{labels}`` as exposed)."""
    async with server.client() as c:
        text = (await c.get("/metrics")).text
    return float(next(x for x in text.splitlines() if x.startswith(series + " ")).split()[-1])


async def _limited(server: Server, kind: str) -> float:
    return await _sample(server, f'runwatch_rate_limited_total{{kind="{kind}"}}')


async def _open_sockets(server: Server, n: int) -> bool:
    return await _sample(server, "runwatch_ws_connections") == n


async def test_runs_per_minute_refuses_with_retry_after_then_recovers(make_server):
    srv = make_server({"RUNWATCH_RUNS_PER_MINUTE": "30"})  # a burst of 30, then one every 2 s
    key = await make_key(srv, "acme", "operator")
    async with srv.client(key) as c:
        for _ in range(30):
            assert (await _start(c)).status_code == 202
        refused = await _start(c)
        assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= 2
        async with srv.client() as other:  # another principal is not held back by this one
            assert (await _start(other)).status_code == 202
        w = await srv.watcher(key)  # the WebSocket start shares the same budget
        assert (await w.request({"type": "start", "agent": "demo", "input": QUICK}))["code"] == "rate_limited"
        await asyncio.sleep(wait)  # the time Retry-After asks for: its passing is the behaviour
        assert (await _start(c)).status_code == 202
        await w.close()
    assert await _limited(srv, "runs_per_minute") == 2


async def test_a_tenant_may_have_so_many_runs_active_at_once(make_server):
    srv = make_server({"RUNWATCH_TENANT_MAX_ACTIVE": "2"})
    key = await make_key(srv, "acme", "operator")
    async with srv.client(key) as c:
        runs = [(await _start(c, LONG)).json()["id"] for _ in range(2)]
        refused = await _start(c, LONG)
        assert refused.status_code == 429 and "acme" in refused.json()["detail"]
        async with srv.client() as admin:  # the default tenant has its own quota
            assert (await _start(admin)).status_code == 202
        w = await srv.watcher(key)
        await w.subscribe(runs[0])
        await c.post(f"/api/runs/{runs[0]}/cancel", json={})
        await w.until_finished(runs[0])
        assert (await _start(c, QUICK)).status_code == 202
        await c.post(f"/api/runs/{runs[1]}/cancel", json={})
        await w.close()
    assert await _limited(srv, "tenant_active") == 1


async def test_one_principal_may_hold_so_many_sockets(make_server):
    srv = make_server({"RUNWATCH_WS_CONNECTIONS_PER_PRINCIPAL": "2"})
    first, second = await srv.watcher(), await srv.watcher()
    third = await srv.watcher()
    closed = await third.wait_closed()
    assert closed.code == 1013 and "connections" in closed.reason
    await first.close()
    await eventually(lambda: _open_sockets(srv, 1))  # the server has seen it go (its place is free by then)
    fourth = await srv.watcher()  # a socket closed frees its place
    await fourth.send({"type": "ping", "id": 1})
    await fourth.wait_for(lambda m: m.get("type") == "pong")
    for w in (second, fourth):
        await w.close()
    assert await _limited(srv, "ws_connections") == 1


@pytest.fixture
async def two_instances(tmp_path):
    prefix = new_prefix()
    servers: list[Server] = []
    async with postgres_database() as url:
        env = {
            "RUNWATCH_REDIS_URL": REDIS,
            "RUNWATCH_REDIS_PREFIX": prefix,
            "RUNWATCH_DATABASE_URL": url,
            "RUNWATCH_RUNS_PER_MINUTE": "20",
            "RUNWATCH_WS_CONNECTIONS_PER_PRINCIPAL": "2",
        }
        for name in ("a", "b"):
            servers.append(Server(tmp_path / name, env | {"RUNWATCH_INSTANCE": name}).start())
        yield servers
        for s in servers:
            s.stop()
    drop_prefix(REDIS, prefix)


async def test_limits_hold_across_two_instances_on_redis(two_instances):
    a, b = two_instances
    key = await make_key(a, "acme", "operator")  # one principal, known to both (one database)
    async with a.client(key) as on_a, b.client(key) as on_b:
        started = time.monotonic()
        codes = [(await _start(on_a if i % 2 else on_b)).status_code for i in range(20)]
        assert codes == [202] * 20
        assert time.monotonic() - started < 3  # (well within the refill of 3 s per run)
        assert (await _start(on_a)).status_code == 429
        assert (await _start(on_b)).status_code == 429
    sockets = [await a.watcher(key), await b.watcher(key)]
    extra = await b.watcher(key)
    assert (await extra.wait_closed()).code == 1013
    for w in sockets:
        await w.close()


async def _start_at_once(clients: list[httpx.AsyncClient], count: int) -> list[httpx.Response]:
    """``count`` starts sent together, spread over ``clients`` in turn."""
    return await asyncio.gather(*(_start(clients[i % len(clients)], LONG) for i in range(count)))


async def _cancel_accepted(client: httpx.AsyncClient, answers: list[httpx.Response]) -> None:
    for r in answers:
        if r.status_code == 202:
            await client.post(f"/api/runs/{r.json()['id']}/cancel", json={})


async def test_thirty_starts_at_once_admit_exactly_the_tenant_quota_on_one_instance(make_server):
    srv = make_server({"RUNWATCH_TENANT_MAX_ACTIVE": "5"})
    key = await make_key(srv, "acme", "operator")
    async with srv.client(key) as c:
        answers = await _start_at_once([c], 30)
        codes = sorted(r.status_code for r in answers)
        assert codes == [202] * 5 + [429] * 25, codes
        assert {r.json()["code"] for r in answers if r.status_code == 429} == {"rate_limited"}
        await _cancel_accepted(c, answers)


async def test_a_hundred_starts_at_once_through_two_instances_admit_exactly_the_tenant_quota(cluster):
    a, b = cluster(2, RUNWATCH_TENANT_MAX_ACTIVE="5")
    key = await make_key(a, "acme", "operator")  # one database: the key works on both
    async with a.client(key) as on_a, b.client(key) as on_b:
        answers = await _start_at_once([on_a, on_b], 100)
        codes = sorted(r.status_code for r in answers)
        assert codes == [202] * 5 + [429] * 95, codes
        await _cancel_accepted(on_a, answers)


async def test_a_start_refused_for_a_full_queue_takes_no_place_in_the_tenant_quota(make_server):
    srv = make_server({"RUNWATCH_TENANT_MAX_ACTIVE": "3", "RUNWATCH_MAX_RUNNING": "1", "RUNWATCH_MAX_QUEUED": "1"})
    key = await make_key(srv, "acme", "operator")
    async with srv.client(key) as c:
        running = (await _start(c, LONG)).json()["id"]
        queued = (await _start(c, LONG)).json()["id"]
        for _ in range(2):  # admitted by the quota, then refused by the queue
            refused = await _start(c, LONG)
            assert refused.status_code == 429 and refused.json()["code"] == "queue_full", refused.text
        await c.post(f"/api/runs/{queued}/cancel", json={})

        async def cancelled() -> bool:
            return (await c.get(f"/api/runs/{queued}")).json()["status"] == "cancelled"

        await eventually(cancelled)
        again = await _start(c, LONG)  # one run active, not three
        assert again.status_code == 202, again.text
        for run_id in (running, again.json()["id"]):
            await c.post(f"/api/runs/{run_id}/cancel", json={})
