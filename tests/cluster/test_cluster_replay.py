"""Replaying a run after a take-over: the REST replay (and the dashboard's Export, which pages the
same way) reaches the run's durable end, whatever the run's Redis Stream lacks.

The owner of sixty runs is killed while its sends to Redis wait (``CLIENT PAUSE WRITE`` on a Redis of
the test's own): PostgreSQL holds a tail of every run that its Redis Stream lacks, as when an owner
dies between its commit and its send. One kill, sixty take-overs."""

from __future__ import annotations

import asyncio
import json
import signal

import asyncpg
import httpx
import redis.asyncio

from tests.conftest import Server
from tests.harness.services import own_redis, postgres_database
from tests.harness.waiting import eventually

RUNS = 60
LEASE = 2.0


async def _replay(client: httpx.AsyncClient, run_id: str, limit: int) -> list[dict]:
    """Every event of a run through ``GET /api/runs/{id}/events``, a page at a time, as a client pages."""
    events: list[dict] = []
    after = 0
    while True:
        page = (await client.get(f"/api/runs/{run_id}/events", params={"after": after, "limit": limit})).json()
        events += page["events"]
        after = page["next_after"]
        if not page["more"]:
            return events


async def _running(server: Server) -> list[dict]:
    async with server.client() as c:
        return (await c.get("/api/runs", params={"status": "running", "limit": 500})).json()["runs"]


async def _start_many(server: Server, count: int, text: str) -> list[str]:
    async with server.client() as c:
        answers = await asyncio.gather(
            *(c.post("/api/runs", json={"agent": "fragile", "input": text}) for _ in range(count))
        )
    return [r.json()["id"] for r in answers]


async def _stream_heads(r: redis.asyncio.Redis, ids: list[str]) -> dict[str, int]:
    heads = {}
    for run_id in ids:
        last = await r.xrevrange(f"runwatch:log:{run_id}", count=1)
        heads[run_id] = int(last[0][0].split(b"-")[0]) if last else 0
    return heads


async def _store_heads(db: asyncpg.Connection, ids: list[str]) -> dict[str, int]:
    rows = await db.fetch("SELECT run_id, max(seq) FROM events WHERE run_id = ANY($1::text[]) GROUP BY run_id", ids)
    return {r[0]: r[1] for r in rows}


async def test_every_replay_after_sixty_take_overs_ends_with_run_finished_and_equals_the_store(tmp_path):
    async with postgres_database() as url:
        with own_redis(tmp_path / "redis") as redis_server:
            env = {
                "RUNWATCH_REDIS_URL": redis_server.url,
                "RUNWATCH_DATABASE_URL": url,
                "RUNWATCH_LEASE_SECONDS": str(LEASE),
                "RUNWATCH_AGENTS": "tests.harness.agents_resumable",
            }
            # The taker's one slot is busy, so the owner started next executes all sixty runs.
            taker = Server(tmp_path / "taker", env | {"RUNWATCH_INSTANCE": "taker", "RUNWATCH_MAX_RUNNING": "1"})
            owner = Server(tmp_path / "owner", env | {"RUNWATCH_INSTANCE": "owner", "RUNWATCH_MAX_RUNNING": "60"})
            taker.start()
            r = redis.asyncio.Redis.from_url(redis_server.url)
            db = await asyncpg.connect(url)
            try:
                blocker = await taker.start_run({"tokens": 100_000, "rate": 5})
                await eventually(lambda: _has_running(taker, 1), timeout=10)
                owner.start()
                ids = await _start_many(owner, RUNS, json.dumps({"tokens": 100_000, "rate": 5}))
                await eventually(lambda: _has_running(taker, RUNS + 1, min_seq=3), timeout=60)

                # Half the runs are followed by the taker for a watcher of its own (their logs in its
                # memory); it reads the others from Redis or the store.
                watcher = await taker.watcher()
                followed = ids[: RUNS // 2]
                for run_id in followed:
                    await watcher.subscribe(run_id)
                for run_id in followed:
                    await watcher.wait_for(lambda m, run_id=run_id: m.get("run_id") == run_id and m.get("seq", 0) > 3)

                # The owner's sends (and every instance's claims) wait until UNPAUSE.
                await r.execute_command("CLIENT", "PAUSE", "10000", "WRITE")

                async def every_stream_lacks_a_tail() -> bool:
                    stored, streamed = await _store_heads(db, ids), await _stream_heads(r, ids)
                    return all(stored[i] > streamed[i] for i in ids)

                await eventually(every_stream_lacks_a_tail, timeout=5)
                owner.proc.send_signal(signal.SIGKILL)
                owner.proc.wait()
                async with taker.client() as c:  # before the take-over: the followed logs lack the tails
                    for run_id in followed:
                        assert await _replay(c, run_id, limit=50) == await _stored(db, run_id), run_id
                await r.execute_command("CLIENT", "UNPAUSE")

                async def all_taken_over() -> bool:
                    async with taker.client() as c:
                        page = (await c.get("/api/runs", params={"status": "failed", "limit": 500})).json()
                    return set(ids) <= {run["id"] for run in page["runs"]}

                await eventually(all_taken_over, timeout=LEASE * 5)
                async with taker.client() as c:
                    for run_id in ids:
                        replay = await _replay(c, run_id, limit=50)
                        assert replay[-1]["type"] == "run.finished", (run_id, len(replay))
                        assert replay == await _stored(db, run_id), run_id
                    await c.post(f"/api/runs/{blocker}/cancel")
                await watcher.close()
            finally:
                await db.close()
                await r.aclose()
                taker.stop()
                if owner.proc is not None and owner.proc.poll() is None:
                    owner.stop()


async def _stored(db: asyncpg.Connection, run_id: str) -> list[dict]:
    return [
        json.loads(row["data"])
        for row in await db.fetch("SELECT data FROM events WHERE run_id = $1 ORDER BY seq", run_id)
    ]


async def _has_running(server: Server, count: int, min_seq: int = 0) -> bool:
    runs = await _running(server)
    return len(runs) == count and all(run["last_seq"] > min_seq for run in runs)
