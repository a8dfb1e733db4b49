"""``python -m bench --only search``: searching, filtering, sorting and the overview over 100,000 runs.

Each store (SQLite with FTS5, PostgreSQL with its full-text search) is filled with the same runs:
inputs of 8 to 20 and answers of 30 to 80 words from a 3,000-word vocabulary, 10% failed with an error,
three models, costs, durations and times to first token spread over seven days. One word appears
in one run's answer only. Measured in the bench process, the median of 20 calls each, side by side
with the plain newest-50 listing of the same store.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.broker import Backends

RARE = "quetzalcoatl"
COLUMNS = (
    "id, agent, tenant, input, model, offline, status, error, created_at, started_at, finished_at,"
    " input_tokens, output_tokens, tool_calls, steps, thread, cost, answer, ttft, stream_seconds"
)


def make_runs(count: int, seed: int = 7) -> list[tuple]:
    rnd = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ren", "tas", "vo", "qui", "dra", "sel", "un", "por", "ex", "ni", "bat"]
    vocabulary = sorted({"".join(rnd.choice(syllables) for _ in range(rnd.randint(2, 4))) for _ in range(4000)})[:3000]
    models = ["gpt-4o", "gpt-4o-mini", "runwatch-offline"]
    now = time.time()
    rows = []
    for i in range(count):
        created = now - 7 * 86400 * (count - i) / count
        duration = rnd.uniform(0.5, 30)
        failed = i % 10 == 0
        words = rnd.choices(vocabulary, k=rnd.randint(30, 80))
        if i == count // 3:
            words.insert(len(words) // 2, RARE)
        output = rnd.randint(50, 2000)
        rows.append(
            (
                f"{int(created * 1000):011x}{i:010x}",
                rnd.choice(["demo", "research", "ops"]),
                "default",
                " ".join(rnd.choices(vocabulary, k=rnd.randint(8, 20))),
                models[i % 3],
                False,
                "failed" if failed else "succeeded",
                f"ToolError: {' '.join(rnd.choices(vocabulary, k=6))}" if failed else None,
                created,
                created + 0.01,
                created + duration,
                rnd.randint(100, 5000),
                output,
                rnd.randint(0, 5),
                rnd.randint(1, 6),
                "",
                None if i % 3 == 2 else round(output * 1e-5, 6),
                None if failed else " ".join(words),
                rnd.uniform(0.1, 2.0),
                duration * 0.8,
            )
        )
    return rows


def cases(runs: list[tuple]) -> dict[str, dict[str, Any]]:
    from runwatch.agents.store.aggregates import Window

    common = runs[5][3].split()[0]
    a, b = runs[7][3].split()[:2]
    now = time.time()
    return {
        "newest 50 (baseline)": {},
        f"q = a word in one answer ({RARE})": {"q": RARE},
        "q = a common word (first page)": {"q": common},
        "q = two words": {"q": f"{a} {b}"},
        "q = a part of a run id": {"q": runs[1234][0][-10:]},
        "sort = cost, first page": {"sort": "cost"},
        "sort = duration, first page": {"sort": "duration"},
        "sort = tokens, ascending": {"sort": "tokens", "order": "asc"},
        "model + last 24 h": {"model": "gpt-4o", "since": now - 86400},
        "failed + q, sorted by cost": {"status": "failed", "q": common, "sort": "cost"},
        "overview, last hour": {"window": Window(since=now - 3600, until=now, bucket=60)},
        "overview, 7 days (all 100,000)": {"window": Window(since=now - 8 * 86400, until=now, bucket=10080)},
    }


async def _measure(store: Any, fill: Callable[[Any, list[tuple]], Any], runs: list[tuple]) -> dict[str, Any]:
    from runwatch.agents.store import RunQuery

    await store.open()
    t0 = time.perf_counter()
    await fill(store, runs)
    filled = time.perf_counter() - t0
    out: dict[str, Any] = {"fill_s": round(filled, 1)}
    for name, kwargs in cases(runs).items():
        samples, found = [], 0
        for _ in range(20):
            t = time.perf_counter()
            if "window" in kwargs:
                figures = await store.overview(kwargs["window"])
                found = figures.runs["total"]
            else:
                found = len((await store.list_runs(RunQuery(limit=50, **kwargs))).runs)
            samples.append(time.perf_counter() - t)
        out[name] = {"ms": round(1000 * statistics.median(samples), 2), "found": found}
    await store.close()
    return out


async def _fill_sqlite(store: Any, runs: list[tuple]) -> None:
    def write() -> None:
        db = store._reader()
        db.execute("BEGIN")
        db.executemany(f"INSERT INTO runs ({COLUMNS}) VALUES ({', '.join('?' * 20)})", runs)
        db.execute("COMMIT")
        db.execute("ANALYZE")

    await asyncio.get_running_loop().run_in_executor(None, write)


async def _fill_postgres(store: Any, runs: list[tuple]) -> None:
    from runwatch.agents.store.migrations import SEARCH_TEXT

    async with store.pool.acquire() as conn:
        await conn.copy_records_to_table("runs", records=runs, columns=[c.strip() for c in COLUMNS.split(",")])
        await conn.execute(f"INSERT INTO run_search (num, search) SELECT num, {SEARCH_TEXT} FROM runs")
        await conn.execute("ANALYZE runs")
        await conn.execute("ANALYZE run_search")


def run(count: int, progress: Callable[[str], None]) -> dict[str, Any]:
    from runwatch.agents.store import PostgresStore, SQLiteStore

    runs = make_runs(count)
    progress(f"search: {count} runs into SQLite (FTS5)")
    with tempfile.TemporaryDirectory(prefix="runwatch-bench-") as folder:
        sqlite = asyncio.run(_measure(SQLiteStore(Path(folder) / "bench.sqlite3"), _fill_sqlite, runs))
    progress(f"search: {count} runs into PostgreSQL (full-text search)")
    with Backends() as b:
        postgres = asyncio.run(_measure(PostgresStore(b.url), _fill_postgres, runs))
    return {"runs": count, "sqlite": sqlite, "postgres": postgres}


def report(res: dict[str, Any]) -> str:
    lines = [
        f"\n### Search, filters, sort and the overview over {res['runs']:,} runs (median of 20, ms)",
        "",
        "| query | SQLite | found | PostgreSQL | found | SQLite / baseline | PostgreSQL / baseline |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    base = {s: res[s]["newest 50 (baseline)"]["ms"] for s in ("sqlite", "postgres")}
    for name in res["sqlite"]:
        if name == "fill_s":
            continue
        s, p = res["sqlite"][name], res["postgres"][name]
        lines.append(
            f"| {name} | {s['ms']} | {s['found']} | {p['ms']} | {p['found']} |"
            f" {s['ms'] / base['sqlite']:.1f}x | {p['ms'] / base['postgres']:.1f}x |"
        )
    lines.append(
        f"| filling (bulk insert, indexing) | {res['sqlite']['fill_s']} s | | {res['postgres']['fill_s']} s | | | |"
    )
    return "\n".join(lines)
