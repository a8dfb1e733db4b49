"""SQLite store: one file, WAL mode, every write batched on a single database thread."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from runwatch.agents.events import Published, RunFinished, RunStatus, Totals, encode
from runwatch.agents.store.base import RunPage, RunSummary

log = structlog.get_logger()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    num INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    agent TEXT NOT NULL,
    tenant TEXT NOT NULL DEFAULT 'default',
    input TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    offline INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    error TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    tool_calls INTEGER NOT NULL DEFAULT 0,
    steps INTEGER NOT NULL DEFAULT 0,
    last_seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, num);
CREATE INDEX IF NOT EXISTS runs_by_agent ON runs (agent, num);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
"""

_RUN_COLUMNS = (
    "id, agent, tenant, input, model, offline, status, error, created_at, started_at, finished_at,"
    " input_tokens, output_tokens, tool_calls, steps, last_seq"
)


def _row_to_summary(row: tuple) -> RunSummary:
    return RunSummary(
        id=row[0],
        agent=row[1],
        tenant=row[2],
        input=row[3],
        model=row[4],
        offline=bool(row[5]),
        status=RunStatus(row[6]),
        error=row[7],
        created_at=row[8],
        started_at=row[9],
        finished_at=row[10],
        input_tokens=row[11],
        output_tokens=row[12],
        tool_calls=row[13],
        steps=row[14],
        last_seq=row[15],
    )


class SQLiteStore:
    """The embedded store.

    Writes: ``accept`` appends to a pending list; one writer task commits everything pending in
    one transaction, so batches grow by themselves under load. Pending is bounded by
    ``max_pending``: past it, ``ready`` makes producers wait (backpressure, nothing dropped).
    """

    def __init__(self, path: str | Path, *, max_pending: int = 50_000) -> None:
        self.path = Path(path)
        self._max_pending = max_pending
        self._pending: list[Published] = []
        self._accepted = 0
        self._written = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runwatch-sqlite")
        self._db: sqlite3.Connection | None = None
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._writer: asyncio.Task[None] | None = None

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self._call(self._open)
        self._writer = asyncio.create_task(self._write_loop(), name="runwatch-store-writer")

    def _open(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        self._db = db

    async def close(self) -> None:
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass
        if self._db is not None:
            await self._call(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    # -- writing -----------------------------------------------------------------------------

    def accept(self, published: Published) -> None:
        self._pending.append(published)
        self._accepted += 1
        self._wake.set()

    async def ready(self) -> None:
        while len(self._pending) > self._max_pending:
            async with self._progress:
                await self._progress.wait()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        target = self._accepted
        if self._written >= target:
            return
        async with self._progress:
            await self._progress.wait_for(lambda: self._written >= target)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                while True:
                    try:
                        await self._call(self._write_batch, batch)
                        break
                    except sqlite3.Error as exc:
                        log.error("store.write_failed", error=str(exc), events=len(batch), retry_in=1.0)
                        await asyncio.sleep(1.0)
                self._written += len(batch)
                async with self._progress:
                    self._progress.notify_all()

    def _write_batch(self, batch: list[Published]) -> None:
        db = self._db
        assert db is not None
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT OR IGNORE INTO events (run_id, seq, type, data) VALUES (?, ?, ?, ?)",
                [(p.run_id, p.seq, p.type, p.data) for p in batch],
            )
            for p in batch:
                ev = p.event
                c = counts[p.run_id]
                c[4] = max(c[4], p.seq)
                if p.type == "run.queued":
                    db.execute(
                        "INSERT OR IGNORE INTO runs (id, agent, tenant, input, model, offline, status,"
                        " created_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?)",
                        (p.run_id, ev.agent, ev.tenant, ev.input, ev.model, int(ev.offline), ev.ts),
                    )
                elif p.type == "run.started":
                    db.execute("UPDATE runs SET status = 'running', started_at = ? WHERE id = ?", (ev.ts, p.run_id))
                elif p.type == "step.finished":
                    c[0] += ev.usage.input_tokens
                    c[1] += ev.usage.output_tokens
                    c[3] += 1
                elif p.type == "tool.finished":
                    c[2] += 1
                elif p.type == "run.finished":
                    db.execute(
                        "UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                        (ev.status, ev.error, ev.ts, p.run_id),
                    )
            db.executemany(
                "UPDATE runs SET input_tokens = input_tokens + ?, output_tokens = output_tokens + ?,"
                " tool_calls = tool_calls + ?, steps = steps + ?, last_seq = MAX(last_seq, ?) WHERE id = ?",
                [(*c, run_id) for run_id, c in counts.items()],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- reading -----------------------------------------------------------------------------

    async def events(self, run_id: str, after: int, limit: int) -> list[Published]:
        await self.flush()
        rows = await self._call(self._select_events, run_id, after, limit)
        return [Published(run_id, seq, type_, data) for seq, type_, data in rows]

    def _select_events(self, run_id: str, after: int, limit: int) -> list[tuple]:
        assert self._db is not None
        return self._db.execute(
            "SELECT seq, type, data FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (run_id, after, limit),
        ).fetchall()

    async def get_run(self, run_id: str) -> RunSummary | None:
        await self.flush()
        row = await self._call(self._select_run, run_id)
        return _row_to_summary(row) if row else None

    def _select_run(self, run_id: str) -> tuple | None:
        assert self._db is not None
        return self._db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()

    async def list_runs(
        self,
        *,
        status: str | None = None,
        agent: str | None = None,
        tenant: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        await self.flush()
        where, args = [], []
        for column, value in (("status", status), ("agent", agent), ("tenant", tenant)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if cursor is not None:
            where.append("num < ?")
            args.append(int(cursor))
        sql = f"SELECT {_RUN_COLUMNS}, num FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY num DESC LIMIT ?"
        args.append(limit + 1)
        rows = await self._call(self._select_many, sql, args)
        more = len(rows) > limit
        rows = rows[:limit]
        return RunPage(runs=[_row_to_summary(r) for r in rows], next=str(rows[-1][-1]) if more and rows else None)

    def _select_many(self, sql: str, args: list) -> list[tuple]:
        assert self._db is not None
        return self._db.execute(sql, args).fetchall()

    async def mark_interrupted(self) -> list[Published]:
        await self.flush()
        return await self._call(self._mark_interrupted)

    def _mark_interrupted(self) -> list[Published]:
        db = self._db
        assert db is not None
        rows = db.execute(
            "SELECT id, input_tokens, output_tokens, tool_calls, steps, COALESCE(started_at, created_at)"
            " FROM runs WHERE status IN ('queued', 'running')"
        ).fetchall()
        out = []
        now = time.time()
        for run_id, tin, tout, tools, steps, since in rows:
            (last,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,)).fetchone()
            event = RunFinished(
                run_id=run_id,
                seq=last + 1,
                ts=now,
                status="failed",
                error="interrupted",
                totals=Totals(
                    input_tokens=tin, output_tokens=tout, tool_calls=tools, steps=steps, duration=round(now - since, 3)
                ),
            )
            data = encode(event)
            db.execute("BEGIN")
            db.execute(
                "INSERT INTO events (run_id, seq, type, data) VALUES (?, ?, 'run.finished', ?)",
                (run_id, event.seq, data),
            )
            db.execute(
                "UPDATE runs SET status = 'failed', error = 'interrupted', finished_at = ?, last_seq = ? WHERE id = ?",
                (now, event.seq, run_id),
            )
            db.execute("COMMIT")
            out.append(Published(run_id, event.seq, "run.finished", data, event))
        return out
