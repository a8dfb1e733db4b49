"""SQLite store: one file, WAL mode, every write batched on a single database thread."""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

from runwatch.agents.events import Published, decode
from runwatch.agents.store import activity, admission, statements
from runwatch.agents.store.aggregates import Figures, Window, assemble, queries
from runwatch.agents.store.base import RunPage, RunSummary, StoreUnavailable
from runwatch.agents.store.buffer import WriteBuffer
from runwatch.agents.store.dialect import SQLITE, Statement
from runwatch.agents.store.run_query import RunQuery, list_sql, to_page
from runwatch.agents.store.schema import (
    ADD_TOTALS,
    INSERTS,
    REBUILD_SEARCH,
    RUN_COLUMNS,
    SCHEMA,
    SEARCH,
    THREAD_INDEX,
    UPGRADES,
    BatchTotals,
    cut,
    row_to_summary,
)

log = structlog.get_logger()

#: How long closing waits for pending writes before it gives up on them (a stalled disk).
CLOSE_TIMEOUT = 10.0

#: SQLite integers are signed 64-bit: a position past this can hold nothing.
MAX_POSITION = 2**63 - 1


class SQLiteStore(WriteBuffer):
    """The embedded store, and the bus's journal.

    Writes: ``append`` adds to a pending list; one writer thread commits everything pending in one
    transaction, so batches grow by themselves under load, then tells the bus (``on_durable``),
    which only then shows those events to anyone. Pending is bounded by ``max_pending`` events and
    ``max_pending_bytes``: past either, ``ready`` makes producers wait (backpressure, nothing
    dropped). A WAL commit survives a crash of the process.

    Reads run on their own threads and connections (WAL readers never wait for the writer), and
    never wait for pending writes: whatever anyone was shown is already durable.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_pending: int = 50_000,
        max_pending_bytes: int = 64 * 1024 * 1024,
        readers: int = 2,
    ) -> None:
        super().__init__(max_pending=max_pending, max_pending_bytes=max_pending_bytes)
        self.path = Path(path)
        self.epoch = ""
        # ``_pending`` is guarded by ``_lock``: the writer thread takes from it.
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)
        self._stopping = False
        self._reader_pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="runwatch-sqlite-read")
        #: Admissions, one at a time on a thread of their own: they take the write lock, and two
        #: waiting for each other would sleep in SQLite's busy handler (milliseconds each).
        self._admitter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runwatch-sqlite-admit")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._db: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: threading.Thread | None = None

    async def _read_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, fn, *args)

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            await self._loop.run_in_executor(None, self._open)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open the database {self.path}: {exc}") from exc
        self._writer = threading.Thread(target=self._write_loop, name="runwatch-sqlite-write", daemon=True)
        self._writer.start()

    def _open(self) -> None:
        db = self._connect()
        # Runs' inputs and answers, and the credentials' hashes: for this user's eyes only (the WAL
        # and shared-memory files SQLite makes beside it take the same mode).
        os.chmod(self.path, 0o600)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
        for column, sql in UPGRADES:
            if column not in columns:
                db.execute(sql)
        db.execute(THREAD_INDEX)
        searchable = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs_fts'").fetchone()
        db.executescript(SEARCH)
        db.executescript(admission.SQLITE_TABLE)
        if not searchable:
            db.execute(REBUILD_SEARCH)  # a database from before search: index the runs it holds
        db.execute(*statements.keep_epoch(SQLITE, secrets.token_hex(8)))
        (self.epoch,) = db.execute(statements.EPOCH).fetchone()
        self._db = db

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA busy_timeout=5000")
        self._connections.append(db)
        return db

    def _reader(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.flush(), CLOSE_TIMEOUT)
        except TimeoutError:
            log.error("store.close_abandoned_writes", events=self.unwritten, timeout=CLOSE_TIMEOUT)
        with self._lock:
            self._stopping = True
            self._has_work.notify()
        loop = asyncio.get_running_loop()
        if self._writer is not None:
            await loop.run_in_executor(None, self._writer.join, CLOSE_TIMEOUT)
        await loop.run_in_executor(None, self._reader_pool.shutdown, True)
        await loop.run_in_executor(None, self._admitter.shutdown, True)
        for db in self._connections:
            db.close()
        self._connections.clear()
        self._db = None

    # -- writing (the journal) -----------------------------------------------------------------

    def append(self, published: Published) -> None:
        with self._lock:
            self._pending.append(published)
            if len(self._pending) == 1:
                self._has_work.notify()
        self._count(published)

    def on_conflict(self, callback: Callable[[str], None]) -> None:
        """Never called: one process owns an SQLite file, so no other writer holds its positions."""

    def _write_loop(self) -> None:
        """The writer thread: take everything pending, commit it as one transaction, hand it back.

        It hands each committed batch to the event loop with one ``call_soon_threadsafe``, so an
        event becomes visible one loop iteration after its commit, however busy the loop is.
        """
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._has_work.wait()
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
            while True:
                try:
                    self._write_batch(batch)
                    break
                except Exception as exc:  # a full disk, a lock held outside: keep the batch, retry
                    log.error("store.write_failed", error=repr(exc), events=len(batch), retry_in=1.0)
                    time.sleep(1.0)
                    if self._stopping and self._loop is not None and self._loop.is_closed():
                        return
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._committed, batch)
            except RuntimeError:  # the loop is gone (the process is ending): nothing to tell
                return

    def _committed(self, batch: list[Published]) -> None:
        """On the event loop: a batch is durable. Count it, tell the bus, wake whoever waited."""
        self._done(batch, batch)

    def _write_batch(self, batch: list[Published]) -> None:
        db = self._db
        assert db is not None
        totals = BatchTotals()
        db.execute("BEGIN")
        try:
            # Tokens in multi-row inserts: one statement step (one GIL round trip for this thread)
            # per up to 200 events, not one per event, so a busy event loop cannot stretch a commit.
            tokens = [p for p in batch if p.type == "token"]
            start = 0
            for size in cut(len(tokens)):
                rows = tokens[start : start + size]
                start += size
                db.execute(INSERTS[size], [v for p in rows for v in (p.run_id, p.seq, p.type, p.data)])
            for p in batch:
                if p.type == "token":
                    continue
                # One by one, to know which are new: a batch written again changes no summary twice.
                if not db.execute(INSERTS[1], (p.run_id, p.seq, p.type, p.data)).rowcount:
                    continue
                ev = p.event if p.event is not None else decode(p.data)
                if p.type == "run.queued":
                    db.execute(
                        "INSERT OR IGNORE INTO runs (id, agent, tenant, input, model, offline, status,"
                        " created_at, thread, external) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                        (
                            p.run_id,
                            ev.agent,
                            ev.tenant,
                            ev.input,
                            ev.model,
                            int(ev.offline),
                            ev.ts,
                            ev.thread,
                            int(ev.external),
                        ),
                    )
                    db.execute(admission.RELEASE, (p.run_id,))  # its row counts for its tenant now
                elif p.type == "run.started":
                    db.execute("UPDATE runs SET status = 'running', started_at = ? WHERE id = ?", (ev.ts, p.run_id))
                elif p.type in ("approval.requested", "approval.resolved"):
                    db.execute(*statements.set_waiting(SQLITE, p.run_id, p.type == "approval.requested" or ev.waiting))
                elif p.type == "step.finished":
                    totals.step(p.run_id, ev)
                elif p.type == "tool.finished":
                    totals.tool(p.run_id)
                elif p.type == "run.finished":
                    answer = self._answers.get(p.run_id) if ev.status == "succeeded" else None
                    db.execute(
                        "UPDATE runs SET status = ?, error = ?, finished_at = ?, answer = ? WHERE id = ?",
                        (ev.status, ev.error, ev.ts, answer, p.run_id),
                    )
            if changed := totals.rows():
                db.executemany(ADD_TOTALS, changed)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- reading -----------------------------------------------------------------------------

    async def head(self, run_id: str) -> int:
        (head,) = (await self._read_call(self._select_many, *statements.head(SQLITE, run_id)))[0]
        return head

    async def events(self, run_id: str, after: int, limit: int) -> list[Published]:
        if after >= MAX_POSITION:
            return []
        rows = await self._read_call(self._select_many, *statements.events(SQLITE, run_id, after, limit))
        return [Published(run_id, seq, type_, data) for seq, type_, data in rows]

    async def get_run(self, run_id: str) -> RunSummary | None:
        rows = await self._read_call(self._select_many, *statements.run(SQLITE, run_id))
        return row_to_summary(rows[0]) if rows else None

    async def list_runs(self, query: RunQuery) -> RunPage:
        sql, args = list_sql(query, SQLITE, RUN_COLUMNS)
        rows = await self._read_call(self._select_many, sql, args)
        return to_page(rows, query, row_to_summary)

    async def overview(self, window: Window) -> Figures:
        return assemble(window, await self._read_call(self._select_all, queries(window, SQLITE)))

    async def agent_activity(self, window: Window, lost: str) -> activity.Activity:
        return activity.assemble(await self._read_call(self._select_all, activity.queries(window, lost, SQLITE)))

    def _select_all(self, selects: list[Statement]) -> list[list[tuple]]:
        db = self._reader()
        db.execute("BEGIN")  # one snapshot for all
        try:
            return [db.execute(sql, args).fetchall() for sql, args in selects]
        finally:
            db.execute("COMMIT")

    def _select_many(self, sql: str, args: list) -> list[tuple]:
        return self._reader().execute(sql, args).fetchall()

    async def unfinished_runs(self) -> list[RunSummary]:
        rows = await self._read_call(self._select_many, statements.UNFINISHED, [])
        return [row_to_summary(r) for r in rows]

    async def admit(self, run_id: str, tenant: str, limit: int) -> int:
        return await self._admit_call(admission.admit_sqlite, run_id, tenant, limit)

    async def unadmit(self, run_id: str) -> None:
        await self._admit_call(admission.unadmit_sqlite, run_id)

    async def _admit_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._admitter, lambda: fn(self._admitting(), *args))

    def _admitting(self) -> sqlite3.Connection:
        """The admission thread's connection: it commits as the writer does (WAL, ``synchronous=NORMAL``:
        durable through a crash of the process, without a disk sync per commit)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
            db.execute("PRAGMA synchronous=NORMAL")
        return db

    async def thread_runs(self, thread: str, limit: int = 100, before: str | None = None) -> list[RunSummary]:
        rows = await self._read_call(self._select_many, *statements.thread_runs(SQLITE, thread, limit, before))
        return [row_to_summary(r) for r in rows]

    async def thread_live(self, thread: str, before: str | None = None) -> list[str]:
        rows = await self._read_call(self._select_many, *statements.thread_live(SQLITE, thread, before))
        return [r[0] for r in rows]

    async def delete_finished(self, before: float, limit: int = 1_000) -> int:
        """Delete up to ``limit`` runs finished before ``before`` (epoch seconds), with their events."""
        return await self._read_call(self._delete_finished, before, limit)

    def _delete_finished(self, before: float, limit: int) -> int:
        db = self._reader()
        db.execute("BEGIN IMMEDIATE")
        try:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM runs WHERE finished_at < ? ORDER BY finished_at LIMIT ?", (before, limit)
                ).fetchall()
            ]
            db.executemany("DELETE FROM events WHERE run_id = ?", [(i,) for i in ids])
            db.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in ids])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(ids)
