"""Tenants: every run belongs to its starter's tenant; another tenant's run answers exactly as an
unknown one would, on every transport; the runs feed shows each connection only its tenant's runs."""

from __future__ import annotations

import pytest

from tests.conftest import Server
from tests.harness.identity import jwt_env, token

LONG_RUN = '{"tokens": 100000, "rate": 50}'
# Made when the module loads: valid for an hour, however long the suite takes to get here.
ACME = token("ann", tenant="acme", roles=["operator"], ttl=3600)
GLOBEX = token("gus", tenant="globex", roles=["operator"], ttl=3600)
UNKNOWN = "1a2b3c4d5e6f7a8b9c0d1"  # the shape of a run id; no such run


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("tenants")
    srv = Server(folder, jwt_env(folder)).start()
    yield srv
    srv.stop()


async def _start(server: Server, who: str, text: str = LONG_RUN) -> str:
    async with server.client(who) as c:
        r = await c.post("/api/runs", json={"agent": "demo", "input": text})
        assert r.status_code == 202, r.text
        return r.json()["id"]


def _same_as_unknown(theirs, unknown, run: str) -> None:
    """Same status and body as for a run that does not exist (with the id swapped back)."""
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.text.replace(run, UNKNOWN) == unknown.text


async def test_another_tenants_run_reads_exactly_as_an_unknown_one(tenants):
    run = await _start(tenants, ACME)
    async with tenants.client(GLOBEX) as c:
        for path in ("/api/runs/{}", "/api/runs/{}/events", "/api/runs/{}/stream"):
            _same_as_unknown(await c.get(path.format(run)), await c.get(path.format(UNKNOWN)), run)
        _same_as_unknown(
            await c.post(f"/api/runs/{run}/cancel", json={}), await c.post(f"/api/runs/{UNKNOWN}/cancel", json={}), run
        )
        listed = (await c.get("/api/runs")).json()["runs"]
        assert run not in {r["id"] for r in listed}
    async with tenants.client(ACME) as c:
        assert (await c.get(f"/api/runs/{run}")).json()["tenant"] == "acme"
        assert (await c.post(f"/api/runs/{run}/cancel", json={})).status_code == 202  # still running: it was not


async def test_another_tenants_run_cannot_be_subscribed_or_cancelled_over_the_websocket(tenants):
    run = await _start(tenants, ACME)
    w = await tenants.watcher(GLOBEX)
    for message in ({"type": "subscribe", "run": "{}"}, {"type": "cancel", "run": "{}"}):
        theirs = await w.request({**message, "run": run})
        unknown = await w.request({**message, "run": UNKNOWN})
        assert theirs["code"] == unknown["code"] == "unknown_run"
        assert theirs["message"].replace(run, UNKNOWN) == unknown["message"]
    await w.close()
    async with tenants.client(ACME) as c:
        assert (await c.get(f"/api/runs/{run}")).json()["status"] in ("queued", "running")
        await c.post(f"/api/runs/{run}/cancel", json={})


async def test_the_runs_feed_carries_only_the_connections_tenant(tenants):
    acme_w, globex_w, admin_w = (await tenants.watcher(ACME), await tenants.watcher(GLOBEX), await tenants.watcher())
    for w in (acme_w, globex_w, admin_w):
        async with tenants.client(ACME if w is acme_w else GLOBEX if w is globex_w else None) as c:
            page = (await c.get("/api/runs", params={"limit": 1})).json()
        assert (await w.request({"type": "subscribe", "run": "*", "after": page["feed"]}))["type"] == "ack"
    ours = await _start(tenants, ACME, '{"tokens": 2}')
    theirs = await _start(tenants, GLOBEX, '{"tokens": 2}')
    for w in (acme_w, globex_w, admin_w):  # each sees its runs finish (the admin sees both)
        for run in (ours, theirs):
            if w is admin_w or (run == ours) == (w is acme_w):
                await w.wait_for(lambda m, r=run: m.get("run_id") == r and m.get("type") == "run.finished")
    last = await _start(tenants, GLOBEX, '{"tokens": 1}')  # after the others: when acme has seen ...
    await globex_w.wait_for(lambda m: m.get("run_id") == last and m.get("type") == "run.finished")
    await admin_w.wait_for(lambda m: m.get("run_id") == last and m.get("type") == "run.finished")
    feed = {m["run_id"] for m in acme_w.messages if "feed" in m}
    assert feed == {ours}  # ... nothing of globex's reached it
    assert {m["run_id"] for m in globex_w.messages if "feed" in m} == {theirs, last}
    positions = [m["feed"] for m in acme_w.messages if "feed" in m]
    assert positions == sorted(positions)
    for w in (acme_w, globex_w, admin_w):
        await w.close()


async def test_an_admin_lists_every_tenant_or_one(tenants):
    a, g = await _start(tenants, ACME, '{"tokens": 1}'), await _start(tenants, GLOBEX, '{"tokens": 1}')
    async with tenants.client() as admin:
        every = {r["id"] for r in (await admin.get("/api/runs", params={"limit": 500})).json()["runs"]}
        globex = (await admin.get("/api/runs", params={"tenant": "globex", "limit": 500})).json()["runs"]
    assert {a, g} <= every
    assert g in {r["id"] for r in globex} and {r["tenant"] for r in globex} == {"globex"}
    async with tenants.client(ACME) as c:  # ?tenant= does not widen a tenant's view
        mine = (await c.get("/api/runs", params={"tenant": "globex", "limit": 500})).json()["runs"]
    assert {r["tenant"] for r in mine} == {"acme"}


async def test_the_overview_counts_only_the_tenants_runs_whatever_it_asks(tenants):
    await _start(tenants, GLOBEX, '{"tokens": 1}')
    await _start(tenants, ACME, '{"tokens": 1}')
    async with tenants.client() as admin:
        globex = (await admin.get("/api/overview", params={"tenant": "globex"})).json()["runs"]["total"]
        every = (await admin.get("/api/overview")).json()["runs"]["total"]
    async with tenants.client(ACME) as c:  # ?tenant= does not widen a tenant's view
        asked = (await c.get("/api/overview", params={"tenant": "globex"})).json()["runs"]["total"]
        mine = (await c.get("/api/overview")).json()["runs"]["total"]
    assert asked == mine and 0 < mine < every and globex < every
