"""The SQLite store's tables, how a ``runs`` row reads as a ``RunSummary``, and how events are inserted."""

from __future__ import annotations

from runwatch.agents.events import RunStatus
from runwatch.agents.store.base import RunSummary

SCHEMA = """
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
    -- unused: a run's last seq is read from events (kept so older databases open unchanged)
    last_seq INTEGER NOT NULL DEFAULT 0,
    thread TEXT NOT NULL DEFAULT '',
    cost REAL
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, num);
CREATE INDEX IF NOT EXISTS runs_by_agent ON runs (agent, num);
CREATE INDEX IF NOT EXISTS runs_by_tenant ON runs (tenant, num);
DROP INDEX IF EXISTS runs_active;
CREATE INDEX IF NOT EXISTS runs_live ON runs (tenant) WHERE status IN ('queued', 'running', 'waiting');
CREATE INDEX IF NOT EXISTS runs_by_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
"""

RUN_COLUMNS = (
    "id, agent, tenant, input, model, offline, status, error, created_at, started_at, finished_at,"
    " input_tokens, output_tokens, tool_calls, steps, thread, cost,"
    # Read from the events, not kept in the row: updating a run's row for every committed batch of
    # its tokens cost the writer a second statement (and page) per batch and run.
    " (SELECT COALESCE(MAX(seq), 0) FROM events WHERE events.run_id = runs.id)"
)


def row_to_summary(row: tuple) -> RunSummary:
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
        thread=row[15],
        cost=row[16],
        last_seq=row[17],
    )


#: Statuses of runs that have not finished.
LIVE = "('queued', 'running', 'waiting')"

#: After ``SCHEMA``: what databases made before threads lack (SQLite has no ADD COLUMN IF NOT EXISTS).
UPGRADES = (
    ("thread", "ALTER TABLE runs ADD COLUMN thread TEXT NOT NULL DEFAULT ''"),
    ("cost", "ALTER TABLE runs ADD COLUMN cost REAL"),
)

#: A batch's step totals of a run: (input, output, tool calls, steps, priced, cost, run id). A step
#: without a price adds no cost; a run none of whose steps had one keeps a null cost.
ADD_TOTALS = (
    "UPDATE runs SET input_tokens = input_tokens + ?, output_tokens = output_tokens + ?,"
    " tool_calls = tool_calls + ?, steps = steps + ?,"
    " cost = CASE WHEN ? THEN COALESCE(cost, 0) + ? ELSE cost END WHERE id = ?"
)
THREAD_INDEX = "CREATE INDEX IF NOT EXISTS runs_by_thread ON runs (thread, num) WHERE thread != ''"


_INSERT_EVENTS = "INSERT OR IGNORE INTO events (run_id, seq, type, data) VALUES "
#: Events per INSERT statement (4 parameters each: under SQLite's oldest limit of 999), largest
#: first. A batch is cut into statements of these sizes only, so the connection's statement cache
#: holds every shape for good: with one shape per batch size (1 to 200) it prepared and dropped
#: statements on every commit, churning the writer thread's malloc arena.
_SHAPES = (200, 100, 50, 20, 10, 5, 2, 1)
INSERTS = {n: _INSERT_EVENTS + ",".join(["(?, ?, ?, ?)"] * n) for n in _SHAPES}


def cut(count: int) -> list[int]:
    """``count`` rows as statement sizes from ``_SHAPES``, largest first (47 → 20, 20, 5, 2)."""
    sizes = []
    for shape in _SHAPES:
        while count >= shape:
            sizes.append(shape)
            count -= shape
    return sizes
