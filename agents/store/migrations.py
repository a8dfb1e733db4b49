"""The PostgreSQL store's schema, as numbered migrations applied once each, in order, under a lock.

Append a migration; never edit one that has shipped. ``migrate`` takes a transaction-scoped advisory
lock first, so instances starting at once apply each migration exactly once (the others wait,
then find it applied).
"""

from __future__ import annotations

import asyncpg
import structlog

from runwatch.agents.store.admission import ADMIT_FUNCTION

log = structlog.get_logger()

#: What a run's search index holds: its input (the first 100,000 characters: a tsvector holds at most
#: 1 MiB), answer and error, split on anything but letters and digits as SQLite's FTS5 does (the
#: default parser would keep ``config.yaml`` or ``bob@example.com`` whole, and ``yaml`` would not find them).
SEARCH_TEXT = (
    "to_tsvector('simple', regexp_replace(left(input, 100000) || ' ' || coalesce(answer, '') || ' '"
    " || coalesce(error, ''), '[^[:alnum:]]+', ' ', 'g'))"
)

#: ``pg_advisory_xact_lock`` key of runwatch's migrations (any fixed 64-bit number; "runwatch" in ASCII).
LOCK_KEY = 0x72756E7761746368

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "runs, events and meta",
        """
        CREATE TABLE runs (
            num BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id TEXT UNIQUE NOT NULL,
            agent TEXT NOT NULL,
            tenant TEXT NOT NULL DEFAULT 'default',
            input TEXT NOT NULL DEFAULT '',
            model TEXT NOT NULL DEFAULT '',
            offline BOOLEAN NOT NULL DEFAULT false,
            status TEXT NOT NULL,
            error TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            started_at DOUBLE PRECISION,
            finished_at DOUBLE PRECISION,
            input_tokens BIGINT NOT NULL DEFAULT 0,
            output_tokens BIGINT NOT NULL DEFAULT 0,
            tool_calls BIGINT NOT NULL DEFAULT 0,
            steps BIGINT NOT NULL DEFAULT 0
        );
        CREATE INDEX runs_by_status ON runs (status, num);
        CREATE INDEX runs_by_agent ON runs (agent, num);
        CREATE INDEX runs_by_tenant ON runs (tenant, num);
        CREATE INDEX runs_by_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;
        CREATE TABLE events (
            run_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            type TEXT NOT NULL,
            data BYTEA NOT NULL,
            PRIMARY KEY (run_id, seq)
        );
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """,
    ),
    (
        2,
        "credentials, server secrets, active runs by tenant",
        """
        CREATE TABLE credentials (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            hash TEXT UNIQUE NOT NULL,
            tenant TEXT NOT NULL,
            role TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION,
            revoked_at DOUBLE PRECISION,
            used_at DOUBLE PRECISION,
            principal TEXT
        );
        CREATE INDEX credentials_by_kind ON credentials (kind, created_at);
        CREATE TABLE server_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE INDEX runs_active ON runs (tenant) WHERE status IN ('queued', 'running');
        """,
    ),
    (
        3,
        "threads, and runs waiting for approval among the live ones",
        """
        ALTER TABLE runs ADD COLUMN thread TEXT NOT NULL DEFAULT '';
        CREATE INDEX runs_by_thread ON runs (thread, num) WHERE thread <> '';
        DROP INDEX runs_active;
        CREATE INDEX runs_live ON runs (tenant) WHERE status IN ('queued', 'running', 'waiting');
        """,
    ),
    (4, "the cost of runs", "ALTER TABLE runs ADD COLUMN cost DOUBLE PRECISION;"),
    (
        5,
        "search (input, answer, error), time to first token, streaming time; indexes of filters and sorts",
        f"""
        ALTER TABLE runs ADD COLUMN answer TEXT;
        ALTER TABLE runs ADD COLUMN ttft DOUBLE PRECISION;
        ALTER TABLE runs ADD COLUMN stream_seconds DOUBLE PRECISION NOT NULL DEFAULT 0;
        -- The search index lives beside runs, written only when a run's text changes: a run's row is
        -- updated at every batch of its steps, which a tsvector of its own would rewrite each time.
        CREATE TABLE run_search (
            num BIGINT PRIMARY KEY REFERENCES runs (num) ON DELETE CASCADE,
            search tsvector NOT NULL
        );
        INSERT INTO run_search (num, search) SELECT num, {SEARCH_TEXT} FROM runs;
        CREATE INDEX run_search_words ON run_search USING GIN (search);
        CREATE INDEX runs_by_model ON runs (model, num);
        CREATE INDEX runs_by_created ON runs (created_at);
        -- Sorting by duration walks this index (the expression of agents.store.run_query); tokens and
        -- cost have none: they change at every step, and an index on them would make every such
        -- update rewrite all of the row's index entries (no HOT update).
        CREATE INDEX runs_by_duration ON runs ((COALESCE(finished_at - started_at, -1)), num);
        """,
    ),
    (
        6,
        "output tokens of the steps that streamed text (output tokens/s)",
        "ALTER TABLE runs ADD COLUMN stream_tokens BIGINT NOT NULL DEFAULT 0;",
    ),
    (
        7,
        "admissions: runs counted against their tenant's quota before their run.queued is written",
        f"""
        CREATE TABLE admissions (run_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, until DOUBLE PRECISION NOT NULL);
        CREATE INDEX admissions_by_tenant ON admissions (tenant);
        {ADMIT_FUNCTION}
        """,
    ),
    (
        8,
        "external runs: an agent running elsewhere executes them and reports them (the ingest API)",
        "ALTER TABLE runs ADD COLUMN external BOOLEAN NOT NULL DEFAULT false;",
    ),
]


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply every migration the database lacks; returns the versions applied now (maybe none)."""
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in MIGRATIONS:
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            log.info("store.migrated", version=version, name=name)
            applied_now.append(version)
    return applied_now


def latest() -> int:
    return MIGRATIONS[-1][0]
