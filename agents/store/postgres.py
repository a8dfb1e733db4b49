"""PostgreSQL store (asyncpg): the shared store of many instances; batched, idempotent writes.

asyncpg, not psycopg 3: it speaks PostgreSQL's binary protocol natively on asyncio and prepares
statements once per connection, so one batch of any size is one round trip of ``unnest`` arrays.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence

import asyncpg
import structlog

from runwatch.agents.events import Published, decode
from runwatch.agents.store import activity, admission, statements
from runwatch.agents.store.aggregates import Figures, Window, assemble, queries
from runwatch.agents.store.base import RunPage, RunSummary, StoreUnavailable
from runwatch.agents.store.buffer import WriteBuffer
from runwatch.agents.store.dialect import POSTGRES, Statement
from runwatch.agents.store.migrations import SEARCH_TEXT, migrate
from runwatch.agents.store.run_query import RunQuery, list_sql, listing, search_words, to_page
from runwatch.agents.store.schema import ADD_TOTALS, RUN_COLUMNS, BatchTotals, numbered, row_to_summary

log = structlog.get_logger()

CLOSE_TIMEOUT = 3.0
#: Most events one transaction writes; a bigger backlog is written as several.
MAX_BATCH = 5_000
MAX_POSITION = 2**63 - 1
#: (Re)index a run's text for search (parameter: its id).
INDEX_RUN = (
    f"INSERT INTO run_search (num, search) SELECT num, {SEARCH_TEXT} FROM runs WHERE id = $1"
    " ON CONFLICT (num) DO UPDATE SET search = EXCLUDED.search"
)
#: A search newest first looks among this many newest runs before it asks the search index.
SEARCH_NEWEST = 5_000

#: ``ADD_TOTALS`` with numbered parameters.
PG_ADD_TOTALS = numbered(ADD_TOTALS)
_INSERT = (
    "INSERT INTO events (run_id, seq, type, data)"
    " SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bytea[]) ON CONFLICT DO NOTHING"
)


async def _insert_events(conn: asyncpg.Connection, batch: list[Published]) -> tuple[set[tuple[str, int]], set[str]]:
    """Insert ``batch``'s events: the positions inserted, and the runs whose positions another
    writer holds (their events of this batch that were inserted are deleted again)."""
    inserted = {(r[0], r[1]) for r in await conn.fetch(_INSERT + " RETURNING run_id, seq", *_columns(batch))}
    conflicts: set[str] = set()
    if len(inserted) < len(batch):
        # Written before: by this process (a retried batch: the same bytes) or by another
        # instance that owns the run now (other bytes: a conflict).
        ours = [p for p in batch if (p.run_id, p.seq) not in inserted]
        stored = {
            (r[0], r[1]): r[2]
            for r in await conn.fetch(
                "SELECT e.run_id, e.seq, e.data FROM events e"
                " JOIN unnest($1::text[], $2::bigint[]) AS k(run_id, seq) USING (run_id, seq)",
                [p.run_id for p in ours],
                [p.seq for p in ours],
            )
        }
        conflicts = {p.run_id for p in ours if stored.get((p.run_id, p.seq)) != p.data}
    if conflicts:
        # The run is another instance's now: nothing of ours in this batch stays for it.
        mine = [p for p in batch if p.run_id in conflicts and (p.run_id, p.seq) in inserted]
        await conn.execute(
            "DELETE FROM events WHERE (run_id, seq) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))",
            [p.run_id for p in mine],
            [p.seq for p in mine],
        )
        inserted -= {(p.run_id, p.seq) for p in mine}
    return inserted, conflicts


class PostgresStore(WriteBuffer):
    """The bus's journal and the run summaries, in PostgreSQL.

    Writes: ``append`` queues; one writer task commits what is pending (up to ``MAX_BATCH`` events)
    in one transaction and then calls ``on_durable``. Idempotent: events are keyed by
    ``(run_id, seq)`` and inserted ``ON CONFLICT DO NOTHING``; run summaries change only for events
    that this commit actually inserted, so a batch retried after a lost acknowledgement changes
    nothing twice. A failing write (the database restarting) is retried every second, the batch
    kept; producers wait once ``max_pending`` events or ``max_pending_bytes`` are unwritten.
    """

    def __init__(
        self,
        url: str,
        *,
        max_pending: int = 50_000,
        max_pending_bytes: int = 64 * 1024 * 1024,
        pool_size: int = 4,
    ) -> None:
        #: A search newest first looks among this many newest runs before it asks the index.
        self.search_newest = SEARCH_NEWEST
        super().__init__(max_pending=max_pending, max_pending_bytes=max_pending_bytes)
        self.url = url
        self.epoch = ""
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._has_work = asyncio.Event()
        self._conflicts: list[Callable[[str], None]] = []
        #: Runs another instance owns now: their events from this process are not written.
        self._refused: set[str] = set()
        self._writer: asyncio.Task[None] | None = None
        #: The writer's own connection: a thousand readers queueing for the pool never delay a commit.
        self._conn: asyncpg.Connection | None = None
        self._stopping = False

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "the store is not open"
        return self._pool

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=self._pool_size, timeout=10)
            async with self._pool.acquire() as conn:
                await migrate(conn)
                sql, args = statements.keep_epoch(POSTGRES, secrets.token_hex(8))
                await conn.execute(sql, *args)
                self.epoch = await conn.fetchval(statements.EPOCH)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            if self._pool is not None:
                self._pool.terminate()
                self._pool = None
            raise StoreUnavailable(f"cannot open the PostgreSQL database: {exc}; check RUNWATCH_DATABASE_URL") from exc
        self._writer = asyncio.create_task(self._write_loop(), name="runwatch-postgres-write")

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.flush(), CLOSE_TIMEOUT)
        except TimeoutError:
            log.error("store.close_abandoned_writes", events=self.unwritten, timeout=CLOSE_TIMEOUT)
        self._stopping = True
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- writing (the journal) -----------------------------------------------------------------

    def append(self, published: Published) -> None:
        self._pending.append(published)
        self._count(published)
        self._has_work.set()

    def refuse(self, run_id: str) -> None:
        """Write nothing more of ``run_id`` from this process (pending events included), until ``accept``."""
        self._refused.add(run_id)

    def accept(self, run_id: str) -> None:
        self._refused.discard(run_id)

    def on_conflict(self, callback: Callable[[str], None]) -> None:
        """``callback(run_id)`` when the database already holds *other* events at positions this
        process wrote for the run: another instance owns it. Those events are not made durable
        (nor shown): they and the rest of the run's events in that batch are left out."""
        self._conflicts.append(callback)

    async def _write_loop(self) -> None:
        while True:
            await self._has_work.wait()
            self._has_work.clear()
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                if self._refused and (refused := [p for p in batch if p.run_id in self._refused]):
                    self._committed(refused, {p.run_id for p in refused})  # counted, never written
                    batch = [p for p in batch if p.run_id not in self._refused]
                    if not batch:
                        continue
                conflicts: set[str] = set()
                while True:
                    try:
                        if self._conn is None or self._conn.is_closed():
                            self._conn = await asyncpg.connect(self.url, timeout=10)
                        conflicts = await self._write_batch(self._conn, batch)
                        break
                    except Exception as exc:  # the database restarting, a bug: the batch is kept and tried again
                        log.error("store.write_failed", error=repr(exc), events=len(batch), retry_in=1.0)
                        if self._conn is not None and not isinstance(exc, asyncpg.PostgresError):
                            self._conn.terminate()
                            self._conn = None
                        await asyncio.sleep(1.0)
                self._committed(batch, conflicts)

    def _committed(self, batch: list[Published], conflicts: set[str]) -> None:
        self._done(batch, [p for p in batch if p.run_id not in conflicts] if conflicts else batch)
        for run_id in conflicts - self._refused:
            self._refused.add(run_id)
            for conflict in self._conflicts:
                try:
                    conflict(run_id)
                except Exception:
                    log.exception("store.conflict_callback_failed")

    async def _write_batch(self, conn: asyncpg.Connection, batch: list[Published]) -> set[str]:
        """Write ``batch`` in one transaction; returns the runs whose positions another writer holds."""
        async with conn.transaction():
            inserted, conflicts = await _insert_events(conn, batch)
            others = [p for p in batch if p.type != "token" and (p.run_id, p.seq) in inserted]
            if others:
                await self._update_runs(conn, others)
            return conflicts

    async def _update_runs(self, conn: asyncpg.Connection, others: list[Published]) -> None:
        """The runs' rows as ``others`` (a batch's events but its tokens) change them: created,
        status and times, answer, search index, totals."""
        totals = BatchTotals()
        for p in others:
            ev = p.event if p.event is not None else decode(p.data)
            if p.type == "run.queued":
                await conn.execute(
                    "INSERT INTO runs (id, agent, tenant, input, model, offline, status, created_at, thread, external)"
                    " VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $9) ON CONFLICT (id) DO NOTHING",
                    p.run_id,
                    _text(ev.agent),
                    _text(ev.tenant),
                    _text(ev.input),
                    _text(ev.model),
                    ev.offline,
                    ev.ts,
                    _text(ev.thread),
                    ev.external,
                )
                await conn.execute(admission.PG_RELEASE, p.run_id)  # its row counts for its tenant now
                await conn.execute(INDEX_RUN, p.run_id)
            elif p.type in ("approval.requested", "approval.resolved"):
                sql, args = statements.set_waiting(POSTGRES, p.run_id, p.type == "approval.requested" or ev.waiting)
                await conn.execute(sql, *args)
            elif p.type == "run.started":
                await conn.execute(
                    "UPDATE runs SET status = 'running', started_at = COALESCE(started_at, $1) WHERE id = $2",
                    ev.ts,
                    p.run_id,
                )
            elif p.type == "run.finished":
                await conn.execute(
                    "UPDATE runs SET status = $1, error = $2, finished_at = $3 WHERE id = $4",
                    ev.status,
                    _text(ev.error) if ev.error is not None else None,
                    ev.ts,
                    p.run_id,
                )
                if ev.status == "succeeded" and (answer := self._answers.get(p.run_id)) is not None:
                    await conn.execute("UPDATE runs SET answer = $1 WHERE id = $2", _text(answer), p.run_id)
                await conn.execute(INDEX_RUN, p.run_id)
            elif p.type == "step.finished":
                totals.step(p.run_id, ev)
            elif p.type == "tool.finished":
                totals.tool(p.run_id)
        if changed := totals.rows():
            await conn.executemany(PG_ADD_TOTALS, changed)

    # -- reading -----------------------------------------------------------------------------

    async def head(self, run_id: str) -> int:
        sql, args = statements.head(POSTGRES, run_id)
        return await self.pool.fetchval(sql, *args)

    async def events(self, run_id: str, after: int, limit: int) -> list[Published]:
        if after >= MAX_POSITION:
            return []
        sql, args = statements.events(POSTGRES, run_id, after, limit)
        return [Published(run_id, r[0], r[1], r[2]) for r in await self.pool.fetch(sql, *args)]

    async def get_run(self, run_id: str) -> RunSummary | None:
        sql, args = statements.run(POSTGRES, run_id)
        row = await self.pool.fetchrow(sql, *args)
        return row_to_summary(tuple(row)) if row else None

    async def list_runs(self, query: RunQuery) -> RunPage:
        if query.q and search_words(query.q) and listing(query) == ("created", "desc"):
            # A search, newest first: the newest runs usually hold a page of matches (a common word);
            # when they do not (a rare one), the search index finds every match, then the newest.
            sql, args = list_sql(query, POSTGRES, RUN_COLUMNS, newest=self.search_newest)
            rows = [tuple(r) for r in await self.pool.fetch(sql, *args)]
            if len(rows) > query.limit:
                return to_page(rows, query, row_to_summary)
            sql, args = list_sql(query, POSTGRES, RUN_COLUMNS, materialize=True)
        else:
            sql, args = list_sql(query, POSTGRES, RUN_COLUMNS)
        rows = [tuple(r) for r in await self.pool.fetch(sql, *args)]
        return to_page(rows, query, row_to_summary)

    async def overview(self, window: Window) -> Figures:
        return assemble(window, await self._select_all(queries(window, POSTGRES)))

    async def agent_activity(self, window: Window, lost: str) -> activity.Activity:
        return activity.assemble(await self._select_all(activity.queries(window, lost, POSTGRES)))

    async def _select_all(self, selects: list[Statement]) -> list[list[tuple]]:
        """Every statement's rows, read in one snapshot."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            return [[tuple(r) for r in await conn.fetch(sql, *args)] for sql, args in selects]

    async def unfinished_runs(self) -> list[RunSummary]:
        rows = await self.pool.fetch(statements.UNFINISHED)
        return [row_to_summary(tuple(r)) for r in rows]

    async def admit(self, run_id: str, tenant: str, limit: int) -> int:
        return await admission.admit_postgres(self.pool, run_id, tenant, limit)

    async def unadmit(self, run_id: str) -> None:
        await self.pool.execute(admission.PG_RELEASE, run_id)

    async def thread_runs(self, thread: str, limit: int = 100, before: str | None = None) -> list[RunSummary]:
        sql, args = statements.thread_runs(POSTGRES, thread, limit, before)
        return [row_to_summary(tuple(r)) for r in await self.pool.fetch(sql, *args)]

    async def thread_live(self, thread: str, before: str | None = None) -> list[str]:
        sql, args = statements.thread_live(POSTGRES, thread, before)
        return [r[0] for r in await self.pool.fetch(sql, *args)]

    async def delete_finished(self, before: float, limit: int = 1_000) -> int:
        """Delete up to ``limit`` runs finished before ``before`` (epoch seconds), with their events."""
        async with self.pool.acquire() as conn, conn.transaction():
            ids = [
                r[0]
                for r in await conn.fetch(
                    "SELECT id FROM runs WHERE finished_at < $1 ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                    before,
                    limit,
                )
            ]
            if ids:
                await conn.execute("DELETE FROM events WHERE run_id = ANY($1::text[])", ids)
                await conn.execute("DELETE FROM runs WHERE id = ANY($1::text[])", ids)
        return len(ids)


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL: it becomes U+FFFD in the summary (the event keeps it)."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _columns(batch: Sequence[Published]) -> tuple[list[str], list[int], list[str], list[bytes]]:
    return [p.run_id for p in batch], [p.seq for p in batch], [p.type for p in batch], [p.data for p in batch]
