"""``python -m bench --broker redis``: the Redis broker and PostgreSQL store beside the embedded ones.

- Fan-out: the same watchers x runs x tokens through one runwatch on the memory broker (SQLite) and
  one on the Redis broker (PostgreSQL), then through two Redis instances with half the watchers
  each, all following the same runs. Server CPU per delivered token and publish-to-receive p99.
- The stores' batch writers alone: events persisted per second by SQLite and by PostgreSQL.
- Listing: the newest 50 of 100,000 runs (and filtered by status), SQLite and PostgreSQL.
- Redis memory: ``used_memory`` after 1,000 runs pass, and once their retention has expired.

Redis and PostgreSQL are the machine's (127.0.0.1:6379 and :5432, or RUNWATCH_BENCH_REDIS and
RUNWATCH_BENCH_POSTGRES); each part uses a key prefix and a database of its own and removes them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio

from bench import servers
from bench.stats import median_of

#: Tokens per second of each run in the fan-out part.
RATE = 400

REDIS = os.environ.get("RUNWATCH_BENCH_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES = os.environ.get("RUNWATCH_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


class Backends:
    """A PostgreSQL database and a Redis key prefix of one bench part's own, removed on exit."""

    def __init__(self) -> None:
        self.name = f"runwatch_bench_{secrets.token_hex(4)}"
        self.url = f"{POSTGRES}/{self.name}"
        self.prefix = f"rwbench-{secrets.token_hex(4)}:"

    def __enter__(self) -> Backends:
        asyncio.run(self._admin(f'CREATE DATABASE "{self.name}"'))
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        asyncio.run(_drop_prefix(self.prefix))

    @staticmethod
    async def _admin(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES + "/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def env(self) -> dict[str, str]:
        return {"RUNWATCH_REDIS_URL": REDIS, "RUNWATCH_REDIS_PREFIX": self.prefix, "RUNWATCH_DATABASE_URL": self.url}


async def _drop_prefix(prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(REDIS)
    keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
    for i in range(0, len(keys), 500):
        await client.delete(*keys[i : i + 500])
    await client.aclose()


def fanout(
    loadgen: Callable[[dict[str, Any]], dict[str, Any]],
    watchers: int,
    runs: int,
    tokens: int,
    repeats: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # Paced like a model (RATE tokens/s): the steady flow of coalesced token events a broker carries,
    # not one burst that coalesces into a single event per run.
    spec = {"protocol": "runwatch", "watchers": watchers, "runs": runs, "tokens": tokens, "rate": RATE}
    for name, instances in (("memory", 1), ("redis", 1), ("redis-2", 2)):
        results = []
        for i in range(repeats):
            progress(f"broker {name}: {watchers} watchers x {runs} runs x {tokens} tokens ({i + 1}/{repeats})")
            with Backends() as b:
                model = servers.model_server()
                env = b.env() if name != "memory" else {}
                started = [servers.runwatch(model, coalesce_ms=25, env=env) for _ in range(instances)]
                try:
                    results.append(
                        loadgen(
                            {
                                **spec,
                                "server_pid": started[0].pid,
                                "server_pids": [s.pid for s in started],
                                "ws_url": started[0].ws_url,
                                "ws_urls": [s.ws_url for s in started],
                                "http_url": started[0].http_url,
                                "token": started[0].token,
                            }
                        )
                    )
                finally:
                    for s in [*started, model]:
                        s.stop()
        out[name] = {
            "runs": results,
            "cpu_us_per_token": median_of(results, "cpu_us_per_token"),
            "latency_p50_ms": median_of(results, "latency_p50_ms"),
            "latency_p99_ms": median_of(results, "latency_p99_ms"),
            "complete": all(r["complete"] for r in results),
        }
        if instances > 1:
            out[name]["instances"] = [
                statistics.median(
                    [r["instances"][n]["cpu_us_per_token"] for r in results if r["instances"][n]["cpu_us_per_token"]]
                    or [0.0]
                )
                for n in range(instances)
            ]
    return out


async def _persist(store: Any, events: int, runs: int) -> dict[str, float]:
    from runwatch.agents.events import Published

    await store.open()
    payload = b'{"type":"token","run_id":"%s","seq":%d,"ts":1795000000.123,"text":" word","deltas":3}'
    batch = [
        Published(f"run{i % runs}", i // runs + 1, "token", payload % (f"run{i % runs}".encode(), i // runs + 1))
        for i in range(events)
    ]
    cpu0, t0 = time.process_time(), time.perf_counter()
    for p in batch:
        store.append(p)
        if store.unwritten > 10_000:
            await store.ready()
    await store.flush()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await store.close()
    return {"events_per_s": round(events / wall), "cpu_us_per_event": round(cpu * 1e6 / events, 2)}


def persist(events: int, progress: Callable[[str], None]) -> dict[str, Any]:
    from runwatch.agents.store import PostgresStore, SQLiteStore

    progress(f"stores: persisting {events} events (SQLite, then PostgreSQL)")
    with tempfile.TemporaryDirectory(prefix="runwatch-bench-") as folder:
        sqlite = asyncio.run(_persist(SQLiteStore(Path(folder) / "bench.sqlite3"), events, 100))
    with Backends() as b:
        postgres = asyncio.run(_persist(PostgresStore(b.url), events, 100))
    return {"sqlite": sqlite, "postgres": postgres}


async def _list(store: Any, fill: Callable[[Any], Any], count: int) -> dict[str, float]:
    from runwatch.agents.store import RunQuery

    await store.open()
    await fill(store)

    async def timed(**kwargs: Any) -> float:
        samples = []
        for _ in range(20):
            t0 = time.perf_counter()
            page = await store.list_runs(RunQuery(limit=50, **kwargs))
            samples.append(time.perf_counter() - t0)
            assert len(page.runs) == 50
        return round(1000 * statistics.median(samples), 3)

    newest = await timed()
    by_status = await timed(status="failed")
    deep = await timed(cursor=str(count // 2))
    await store.close()
    return {"newest_ms": newest, "by_status_ms": by_status, "middle_page_ms": deep}


def listing(count: int, progress: Callable[[str], None]) -> dict[str, Any]:
    from runwatch.agents.store import PostgresStore, SQLiteStore

    progress(f"stores: listing the newest 50 of {count} runs (SQLite, then PostgreSQL)")
    columns = "id, agent, tenant, input, model, status, created_at, finished_at"

    async def fill_sqlite(store: SQLiteStore) -> None:
        def write() -> None:
            db = store._reader()
            db.execute("BEGIN")
            db.executemany(
                f"INSERT INTO runs ({columns}) VALUES (?, 'demo', 'default', 'hi', 'm', ?, ?, ?)",
                [(f"r{i:08d}", "failed" if i % 10 == 0 else "succeeded", 1e9 + i, 1e9 + i + 1) for i in range(count)],
            )
            db.executemany(
                "INSERT INTO events (run_id, seq, type, data) VALUES (?, 1, 'run.queued', x'7b7d')",
                [(f"r{i:08d}",) for i in range(count)],
            )
            db.execute("COMMIT")

        await asyncio.get_running_loop().run_in_executor(None, write)

    async def fill_postgres(store: PostgresStore) -> None:
        await store.pool.execute(
            f"INSERT INTO runs ({columns}) SELECT 'r' || lpad(i::text, 8, '0'), 'demo', 'default', 'hi', 'm',"
            " CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'succeeded' END, 1e9 + i, 1e9 + i + 1"
            f" FROM generate_series(0, {count - 1}) AS i"
        )
        await store.pool.execute(
            "INSERT INTO events (run_id, seq, type, data) SELECT id, 1, 'run.queued', '\\x7b7d' FROM runs"
        )
        await store.pool.execute("ANALYZE")

    with tempfile.TemporaryDirectory(prefix="runwatch-bench-") as folder:
        sqlite = asyncio.run(_list(SQLiteStore(Path(folder) / "bench.sqlite3"), fill_sqlite, count))
    with Backends() as b:
        postgres = asyncio.run(_list(PostgresStore(b.url), fill_postgres, count))
    return {"runs": count, "sqlite": sqlite, "postgres": postgres}


async def _redis_memory(b: Backends, runs: int, tokens: int, retain: float) -> dict[str, Any]:
    from runwatch.agents.bus.redis import RedisBus
    from runwatch.agents.events import RunFinished, RunQueued, RunStarted, Token
    from runwatch.agents.store import PostgresStore

    client = redis.asyncio.Redis.from_url(REDIS)
    store = PostgresStore(b.url)
    await store.open()
    bus = RedisBus(REDIS, journal=store, prefix=b.prefix, retain_seconds=retain)
    await bus.start()
    before = (await client.info("memory"))["used_memory"]
    for r in range(runs):
        run_id = f"run{r:05d}"
        await bus.publish(RunQueued(run_id=run_id, agent="demo", input="hi", model="m"))
        await bus.publish(RunStarted(run_id=run_id, agent="demo"))
        for t in range(tokens):
            await bus.publish(Token(run_id=run_id, text=f" token{t}", deltas=3))
        await bus.publish(RunFinished(run_id=run_id, status="succeeded"))
    await bus.broker.sent()
    after = (await client.info("memory"))["used_memory"]
    keys_after = len([k async for k in client.scan_iter(match=b.prefix + "*", count=1000)])
    await asyncio.sleep(retain + 1.5)
    keys_left = len([k async for k in client.scan_iter(match=b.prefix + "*", count=1000)])  # SCAN expires lazily too
    await asyncio.sleep(0.5)
    expired = (await client.info("memory"))["used_memory"]
    await bus.close()
    await store.close()
    await client.aclose()
    return {
        "runs": runs,
        "events_per_run": tokens + 3,
        "used_memory_growth_mib": round((after - before) / 2**20, 2),
        "keys_after_runs": keys_after,
        "retain_seconds": retain,
        "keys_left_after_retention": keys_left,
        "used_memory_growth_after_retention_mib": round((expired - before) / 2**20, 2),
    }


def redis_memory(runs: int, tokens: int, progress: Callable[[str], None]) -> dict[str, Any]:
    progress(f"Redis memory: {runs} runs of {tokens} tokens, then their retention")
    with Backends() as b:
        return asyncio.run(_redis_memory(b, runs, tokens, retain=3.0))


def run_all(params: dict[str, Any], loadgen: Callable, progress: Callable[[str], None]) -> dict[str, Any]:
    return {
        "fanout": fanout(loadgen, params["watchers"], params["runs"], params["tokens"], params["repeats"], progress),
        "persist": persist(params["persist_events"], progress),
        "listing": listing(params["list_runs"], progress),
        "redis_memory": redis_memory(params["memory_runs"], 50, progress),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def report(res: dict[str, Any], params: dict[str, Any]) -> str:
    f = res["fanout"]
    lines = [
        f"### Broker: {params['watchers']} watchers x {params['runs']} runs x {params['tokens']} tokens at {RATE} "
        f"tokens/s, median of {params['repeats']}",
        "",
        "| broker | CPU µs per delivered token | p50 ms | p99 ms | complete |",
        "|---|---:|---:|---:|:-:|",
    ]
    labels = {
        "memory": "memory (SQLite), one instance",
        "redis": "Redis (PostgreSQL), one instance",
        "redis-2": "Redis (PostgreSQL), two instances, half the watchers each (CPU of both)",
    }
    for name, row in f.items():
        lines.append(
            f"| {labels[name]} | {row['cpu_us_per_token']} | {row['latency_p50_ms']} | {row['latency_p99_ms']} | "
            f"{'yes' if row['complete'] else 'NO'} |"
        )
    p, li, m = res["persist"], res["listing"], res["redis_memory"]
    measures = {
        "Redis path CPU per delivered token / memory path (target ≤ 1.5)": _ratio(
            f["redis"]["cpu_us_per_token"], f["memory"]["cpu_us_per_token"]
        ),
        "Redis path p99 publish-to-receive, ms (target ≤ 100)": f["redis"]["latency_p99_ms"],
        "two instances: p99, ms (target ≤ 150)": f["redis-2"]["latency_p99_ms"],
        "two instances: each one's CPU µs per delivered token": " / ".join(str(x) for x in f["redis-2"]["instances"]),
        "persisted events/s, SQLite writer alone": p["sqlite"]["events_per_s"],
        "persisted events/s, PostgreSQL writer alone": p["postgres"]["events_per_s"],
        f"newest 50 of {li['runs']} runs, ms: SQLite / PostgreSQL": f"{li['sqlite']['newest_ms']} / "
        f"{li['postgres']['newest_ms']}",
        "…filtered by status, ms: SQLite / PostgreSQL": f"{li['sqlite']['by_status_ms']} / "
        f"{li['postgres']['by_status_ms']}",
        "…a page in the middle, ms: SQLite / PostgreSQL": f"{li['sqlite']['middle_page_ms']} / "
        f"{li['postgres']['middle_page_ms']}",
        f"Redis used_memory growth after {m['runs']} runs of {m['events_per_run']} events, MiB": m[
            "used_memory_growth_mib"
        ],
        f"…after their retention ({m['retain_seconds']} s): keys left / growth, MiB": (
            f"{m['keys_left_after_retention']} / {m['used_memory_growth_after_retention_mib']}"
        ),
    }
    lines += ["", "| measure | value |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in measures.items()]
    return "\n".join(lines)
