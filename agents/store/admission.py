"""Admitting a run against its tenant's quota of active runs: count and reserve in one step.

A run counts against its tenant from its admission until it finishes: first as a row of
``admissions`` (written before its ``run.queued`` is published), then as its ``runs`` row, whose
insert deletes the admission in the same transaction — so at every moment it is counted once.
Counting and reserving is one transaction holding the tenant's lock: SQLite's single writer
(``BEGIN IMMEDIATE``), PostgreSQL's advisory lock on the tenant (``pg_advisory_xact_lock``, in a
function: one round trip, the lock held for microseconds). Two starts, on one instance or on two,
can therefore never both take a tenant's last place.

An admission whose ``run.queued`` is never written (its instance died while admitting it) stops
counting ``ADMISSION_SECONDS`` after it was made.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING

from runwatch.agents.store.schema import LIVE, numbered

if TYPE_CHECKING:
    import asyncpg

#: How long a place reserved for a run counts without its ``run.queued`` written.
ADMISSION_SECONDS = 60.0

#: SQLite's table (PostgreSQL's is migration 6 in ``agents.store.migrations``).
SQLITE_TABLE = """
CREATE TABLE IF NOT EXISTS admissions (run_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, until REAL NOT NULL);
CREATE INDEX IF NOT EXISTS admissions_by_tenant ON admissions (tenant);
"""

#: A tenant's active runs: live rows, and admissions whose ``run.queued`` is not written yet.
COUNT = (
    f"SELECT (SELECT count(*) FROM runs WHERE tenant = ? AND status IN {LIVE})"
    " + (SELECT count(*) FROM admissions WHERE tenant = ?)"
)
EXPIRE = "DELETE FROM admissions WHERE tenant = ? AND until < ?"
RESERVE = "INSERT INTO admissions (run_id, tenant, until) VALUES (?, ?, ?)"
#: Run by the writer with a run's ``run.queued`` (its row now counts), and when a start fails.
RELEASE = "DELETE FROM admissions WHERE run_id = ?"

PG_RELEASE = numbered(RELEASE)
#: ``pg_advisory_xact_lock(class, key)``: the class of admission locks (two-key locks never collide
#: with the migrations' one-key lock); the key is the tenant's hash.
LOCK_CLASS = 0x72776164  # "rwad"
#: PostgreSQL's admission (migration 6): each statement of a volatile function reads a snapshot of
#: its own, so the count, taken once the lock is held, sees every admission committed before.
ADMIT_FUNCTION = f"""
CREATE FUNCTION runwatch_admit(p_run TEXT, p_tenant TEXT, p_limit BIGINT, p_now DOUBLE PRECISION,
                               p_until DOUBLE PRECISION) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE active BIGINT;
BEGIN
    -- A reservation lost in a crash of the database is no harm (its start failed with it): the
    -- commit need not wait for the disk, nor the tenant's next start for it.
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pg_advisory_xact_lock({LOCK_CLASS}, hashtext(p_tenant));
    DELETE FROM admissions WHERE tenant = p_tenant AND until < p_now;
    SELECT (SELECT count(*) FROM runs WHERE tenant = p_tenant AND status IN {LIVE})
         + (SELECT count(*) FROM admissions WHERE tenant = p_tenant) INTO active;
    IF active < p_limit THEN
        INSERT INTO admissions (run_id, tenant, until) VALUES (p_run, p_tenant, p_until);
    END IF;
    RETURN active;
END $$;
"""


def admit_sqlite(db: sqlite3.Connection, run_id: str, tenant: str, limit: int) -> int:
    """Reserve a place for ``run_id`` if ``tenant`` has fewer than ``limit`` active runs; returns
    how many it had (so the run was admitted if and only if that is below ``limit``)."""
    now = time.time()
    db.execute("BEGIN IMMEDIATE")  # the database's one write lock: admissions and the writer take turns
    try:
        db.execute(EXPIRE, (tenant, now))
        (active,) = db.execute(COUNT, (tenant, tenant)).fetchone()
        if active < limit:
            db.execute(RESERVE, (run_id, tenant, now + ADMISSION_SECONDS))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return active


def unadmit_sqlite(db: sqlite3.Connection, run_id: str) -> None:
    db.execute(RELEASE, (run_id,))


async def admit_postgres(pool: asyncpg.Pool, run_id: str, tenant: str, limit: int) -> int:
    """As ``admit_sqlite``: ``runwatch_admit``, under the tenant's advisory lock (held until its
    statement's transaction ends)."""
    now = time.time()
    return await pool.fetchval(
        "SELECT runwatch_admit($1, $2, $3, $4, $5)", run_id, tenant, limit, now, now + ADMISSION_SECONDS
    )
