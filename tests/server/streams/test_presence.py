"""Presence: who watches a run, told to its watchers as they join and leave (no seq)."""

from __future__ import annotations

from tests.harness.identity import make_key


def _presence(run: str, count: int, names: list[str] | None = None):
    def match(m: dict) -> bool:
        if m.get("type") != "presence" or m.get("run") != run or m.get("count") != count:
            return False
        return names is None or [w["name"] for w in m["watchers"]] == names

    return match


async def test_watchers_joining_and_leaving_are_counted_and_named(server):
    run = await server.start_run({"tokens": 100_000, "rate": 20})
    names = ["ada", "grace", "linus"]
    keys = [await make_key(server, "default", "viewer", name) for name in names]
    watchers = []
    for n, key in enumerate(keys, start=1):
        w = await server.watcher(key)
        await w.subscribe(run)
        watchers.append(w)
        seen = await watchers[0].wait_for(_presence(run, n))
        assert [x["name"] for x in seen["watchers"]] == names[:n]
        assert "seq" not in seen and "run_id" not in seen
    last = await watchers[2].wait_for(_presence(run, 3))
    assert {x["name"] for x in last["watchers"]} == set(names)
    async with server.client() as c:
        r = await c.get(f"/api/runs/{run}/presence")
        assert r.status_code == 200 and r.json()["count"] == 3, r.text
    await watchers[1].close()
    await watchers[0].wait_for(_presence(run, 2, ["ada", "linus"]))
    reply = await watchers[2].request({"type": "unsubscribe", "run": run})
    assert reply["type"] == "ack"
    alone = await watchers[0].wait_for(_presence(run, 1))
    assert [x["name"] for x in alone["watchers"]] == ["ada"]
    async with server.client() as c:
        assert (await c.get(f"/api/runs/{run}/presence")).json()["count"] == 1
        await c.post(f"/api/runs/{run}/cancel", json={})
    for w in (watchers[0], watchers[2]):
        await w.close()


async def test_two_sockets_of_one_principal_count_once(server):
    run = await server.start_run({"tokens": 100_000, "rate": 20})
    key = await make_key(server, "default", "viewer", "two-tabs")
    a, b = await server.watcher(key), await server.watcher(key)
    await a.subscribe(run)
    await b.subscribe(run)
    await b.wait_for(_presence(run, 1))
    async with server.client() as c:
        assert (await c.get(f"/api/runs/{run}/presence")).json()["count"] == 1
        await c.post(f"/api/runs/{run}/cancel", json={})
    await a.close()
    await b.close()


async def test_presence_of_another_tenants_run_is_unknown(server):
    run = await server.start_run({"tokens": 1})
    other = await make_key(server, "presence-other", "viewer", "nosy")
    async with server.client(other) as c:
        r = await c.get(f"/api/runs/{run}/presence")
    assert r.status_code == 404 and r.json()["code"] == "unknown_run"
