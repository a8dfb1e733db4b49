"""Losing Redis: a Redis of the test's own (``redis-server`` on a free port, no persistence) is
stopped and started again under two instances while a run streams."""

from __future__ import annotations

import httpx

from tests.conftest import Server
from tests.services import own_redis, postgres_database
from tests.watcher import assert_contiguous, eventually, text_of


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
