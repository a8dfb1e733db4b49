"""The SQLite store's tables, how a ``runs`` row reads as a ``RunSummary``, and how events are inserted."""

from __future__ import annotations

from runwatch.agents.events import RunStatus, StepFinished
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
    cost REAL,
    answer TEXT,
    ttft REAL,
    stream_seconds REAL NOT NULL DEFAULT 0,
    stream_tokens INTEGER NOT NULL DEFAULT 0,
    external INTEGER NOT NULL DEFAULT 0
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
    " input_tokens, output_tokens, tool_calls, steps, thread, cost, substr(answer, 1, 280), ttft,"
    # Read from the events, not kept in the row: updating a run's row for every committed batch of
    # its tokens cost the writer a second statement (and page) per batch and run.
    " (SELECT COALESCE(MAX(seq), 0) FROM events WHERE events.run_id = runs.id),"
    " external"
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
        answer_preview=row[17],
        ttft=row[18],
        last_seq=row[19],
        external=bool(row[20]),
    )


#: Statuses of runs that have not finished.
LIVE = "('queued', 'running', 'waiting')"
#: Whether a run is external, as 1 or 0 in both databases (SQLite keeps an integer, PostgreSQL a boolean).
EXTERNAL = "CASE WHEN external THEN 1 ELSE 0 END"

#: After ``SCHEMA``: what databases made before threads lack (SQLite has no ADD COLUMN IF NOT EXISTS).
UPGRADES = (
    ("thread", "ALTER TABLE runs ADD COLUMN thread TEXT NOT NULL DEFAULT ''"),
    ("cost", "ALTER TABLE runs ADD COLUMN cost REAL"),
    ("answer", "ALTER TABLE runs ADD COLUMN answer TEXT"),
    ("ttft", "ALTER TABLE runs ADD COLUMN ttft REAL"),
    ("stream_seconds", "ALTER TABLE runs ADD COLUMN stream_seconds REAL NOT NULL DEFAULT 0"),
    ("stream_tokens", "ALTER TABLE runs ADD COLUMN stream_tokens INTEGER NOT NULL DEFAULT 0"),
    ("external", "ALTER TABLE runs ADD COLUMN external INTEGER NOT NULL DEFAULT 0"),
)

#: After ``UPGRADES``: the search index (FTS5, over input, answer and error; kept by triggers) and
#: the indexes of filters and the overview. ``REBUILD_SEARCH`` fills it once for runs made before it.
SEARCH = """
CREATE VIRTUAL TABLE IF NOT EXISTS runs_fts USING fts5(
    input, answer, error, content='runs', content_rowid='num', tokenize='unicode61 remove_diacritics 2',
    prefix='2 3'
);
CREATE TRIGGER IF NOT EXISTS runs_fts_insert AFTER INSERT ON runs BEGIN
    INSERT INTO runs_fts (rowid, input, answer, error) VALUES (new.num, new.input, new.answer, new.error);
END;
CREATE TRIGGER IF NOT EXISTS runs_fts_update AFTER UPDATE OF input, answer, error ON runs BEGIN
    INSERT INTO runs_fts (runs_fts, rowid, input, answer, error)
    VALUES ('delete', old.num, old.input, old.answer, old.error);
    INSERT INTO runs_fts (rowid, input, answer, error) VALUES (new.num, new.input, new.answer, new.error);
END;
CREATE TRIGGER IF NOT EXISTS runs_fts_delete AFTER DELETE ON runs BEGIN
    INSERT INTO runs_fts (runs_fts, rowid, input, answer, error)
    VALUES ('delete', old.num, old.input, old.answer, old.error);
END;
CREATE INDEX IF NOT EXISTS runs_by_model ON runs (model, num);
CREATE INDEX IF NOT EXISTS runs_by_duration ON runs (COALESCE(finished_at - started_at, -1), num);
CREATE INDEX IF NOT EXISTS runs_by_tokens ON runs ((input_tokens + output_tokens), num);
CREATE INDEX IF NOT EXISTS runs_by_cost ON runs (COALESCE(cost, -1), num);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at);
"""
REBUILD_SEARCH = "INSERT INTO runs_fts (runs_fts) VALUES ('rebuild')"

#: A batch's step totals of a run: (input, output, tool calls, steps, priced, cost, ttft, streaming
#: seconds, streaming tokens, run id). A step without a price adds no cost; a run none of whose steps
#: had one keeps a null cost. ``ttft`` is kept from the run's first step that had one. Streaming
#: seconds and tokens are those of the steps that streamed text (output tokens/s: ``aggregates``).
ADD_TOTALS = (
    "UPDATE runs SET input_tokens = input_tokens + ?, output_tokens = output_tokens + ?,"
    " tool_calls = tool_calls + ?, steps = steps + ?,"
    " cost = CASE WHEN ? THEN COALESCE(cost, 0) + ? ELSE cost END,"
    " ttft = COALESCE(ttft, ?), stream_seconds = stream_seconds + ?, stream_tokens = stream_tokens + ?"
    " WHERE id = ?"
)


def numbered(sql: str) -> str:
    """``sql`` with PostgreSQL's numbered parameters (``$1``, ``$2``…) for SQLite's ``?``."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))


class BatchTotals:
    """What one committed batch adds to its runs' totals (``ADD_TOTALS``'s rows), from its events."""

    def __init__(self) -> None:
        self._runs: dict[str, list] = {}

    def _of(self, run_id: str) -> list:
        # input, output, tool calls, steps, priced, cost, ttft, streaming seconds, streaming tokens
        return self._runs.setdefault(run_id, [0, 0, 0, 0, False, 0.0, None, 0.0, 0])

    def step(self, run_id: str, ev: StepFinished) -> None:
        c = self._of(run_id)
        c[0] += ev.usage.input_tokens
        c[1] += ev.usage.output_tokens
        c[3] += 1
        if ev.cost is not None:
            c[4] = True
            c[5] += ev.cost
        if ev.ttft is not None:
            if c[6] is None:
                c[6] = ev.ttft
            if ev.streamed_text:
                c[7] += max(ev.duration - ev.ttft, 0.0)
                c[8] += ev.usage.output_tokens

    def tool(self, run_id: str) -> None:
        self._of(run_id)[2] += 1

    def rows(self) -> list[tuple]:
        return [(*c, run_id) for run_id, c in self._runs.items()]


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
