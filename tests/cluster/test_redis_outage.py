"""Losing Redis: a Redis of the test's own (``redis-server`` on a free port, no persistence) is
stopped and started again under two instances while a run streams."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import httpx

from tests.conftest import Server
from tests.harness.services import own_redis, postgres_database
from tests.harness.waiting import eventually
from tests.harness.watcher import Watcher, assert_contiguous, text_of

LEASE = 2.0


async def test_a_redis_restart_loses_nothing_and_watchers_are_told_to_reconnect(tmp_path):
    async with postgres_database() as url:
        with own_redis(tmp_path / "redis") as redis_server:
            env = {
                "RUNWATCH_REDIS_URL": redis_server.url,
                "RUNWATCH_DATABASE_URL": url,
                "RUNWATCH_LEASE_SECONDS": "2",
            }
            a = Server(tmp_path / "a", env | {"RUNWATCH_INSTANCE": "a"}).start()
            b = Server(tmp_path / "b", env | {"RUNWATCH_INSTANCE": "b"}).start()
            try:
                run_id = await a.start_run({"tokens": 600, "rate": 150})
                watchers = [await a.watcher(), await b.watcher()]
                for w in watchers:
                    await w.subscribe(run_id)
                    await w.wait_for(lambda m: m.get("type") == "token")

                redis_server.stop()  # everything it held is gone
                for w in watchers:
                    closed = await w.wait_closed(timeout=10)
                    assert closed.code == 1012, closed
                async with httpx.AsyncClient() as c:
                    health = await c.get(a.url + "/api/health")
                    assert health.status_code == 503 and "Redis" in health.json()["problem"]
                    refused = await c.post(a.url + "/api/runs", json={"agent": "demo", "input": "hi"}, headers=a.auth)
                    assert refused.status_code == 503 and refused.json()["code"] == "unavailable"

                redis_server.start()  # same port, empty

                async def ready() -> bool:
                    async with httpx.AsyncClient() as c:
                        return all([(await c.get(s.url + "/api/health")).status_code == 200 for s in (a, b)])

                await eventually(ready, timeout=15)
                for server, before in zip((a, b), watchers, strict=True):
                    seen = before.events(run_id)
                    again = await server.watcher()
                    await again.subscribe(run_id, after=seen[-1]["seq"])
                    rest = await again.until_finished(run_id, timeout=30)
                    assert_contiguous(seen + rest)
                    assert rest[-1]["status"] == "succeeded"
                    assert len(text_of(seen + rest).split()) == 600
                    await again.close()
            finally:
                a.stop()
                b.stop()


RUNS = 8
TOKENS, RATE = 1400, 100  # 14 s of streaming: the runs outlast both outages


async def _ready(*servers: Server) -> None:
    async def all_ready() -> bool:
        async with httpx.AsyncClient() as c:
            return all([(await c.get(s.url + "/api/health")).status_code == 200 for s in servers])

    await eventually(all_ready, timeout=20)


async def _follow(server: Server, seen: dict[str, list[dict]]) -> Watcher:
    """A watcher of every run in ``seen``, each from the last event it holds (a client resuming)."""
    w = await server.watcher()
    for run_id, events in seen.items():
        await w.subscribe(run_id, after=events[-1]["seq"] if events else 0)
    return w


def _collect(w: Watcher, seen: dict[str, list[dict]]) -> None:
    for run_id in seen:
        seen[run_id] += w.events(run_id)


async def test_runs_whose_owner_lives_go_on_through_empty_redis_restarts_shorter_and_longer_than_the_lease(tmp_path):
    async with postgres_database() as url:
        with own_redis(tmp_path / "redis") as redis_server:
            env = {
                "RUNWATCH_REDIS_URL": redis_server.url,
                "RUNWATCH_DATABASE_URL": url,
                "RUNWATCH_LEASE_SECONDS": str(LEASE),
            }
            a = Server(tmp_path / "a", env | {"RUNWATCH_INSTANCE": "a"}).start()
            b = Server(tmp_path / "b", env | {"RUNWATCH_INSTANCE": "b"}).start()
            db = await asyncpg.connect(url)
            try:
                text = json.dumps({"tokens": TOKENS, "rate": RATE})
                ids = [await a.start_run(text) for _ in range(RUNS)]  # the demo agent: not resumable
                seen: dict[str, list[dict]] = {run_id: [] for run_id in ids}
                w = await _follow(b, seen)
                for run_id in ids:
                    await w.wait_for(lambda m, r=run_id: m.get("run_id") == r and m.get("type") == "token")
                for outage in (0.75 * LEASE, 1.5 * LEASE):  # shorter than the lease, then longer
                    redis_server.stop()  # everything it held is gone
                    assert (await w.wait_closed()).code == 1012
                    _collect(w, seen)
                    await asyncio.sleep(outage)  # (the outage itself: Redis stays away this long)
                    redis_server.start()  # same port, empty
                    await _ready(a, b)
                    w = await _follow(b, seen)
                    for run_id in ids:  # every run goes on, on the instance that executed it
                        last = seen[run_id][-1]["seq"]
                        event = await w.wait_for(
                            lambda m, r=run_id, s=last: m.get("run_id") == r and m.get("seq", 0) > s
                        )
                        assert event["type"] != "run.finished", event  # still running: the next outage finds it
                for run_id in ids:
                    await w.until_finished(run_id, timeout=30)
                _collect(w, seen)
                await w.close()
                for run_id, events in seen.items():
                    assert_contiguous(events)  # what the watcher saw across both restarts: no gap, no repeat
                    assert events[-1]["status"] == "succeeded", events[-1]
                    assert len(text_of(events).split()) == TOKENS
                    stored = await db.fetch("SELECT data FROM events WHERE run_id = $1 ORDER BY seq", run_id)
                    assert events == [json.loads(row["data"]) for row in stored]
            finally:
                await db.close()
                a.stop()
                b.stop()
