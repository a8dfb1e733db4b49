"""The statements the SQLite and PostgreSQL stores share, written once: each gives its SQL in the
store's dialect with its parameters, and the stores only run it.

What stays in a store is what really differs: how a batch is written (SQLite's multi-row inserts,
PostgreSQL's ``unnest`` arrays and conflicts between instances), and retention's locking.
"""

from __future__ import annotations

from runwatch.agents.store.dialect import Dialect, Params, Statement
from runwatch.agents.store.schema import LIVE, RUN_COLUMNS

#: The database's epoch (``keep_epoch`` sets it once).
EPOCH = "SELECT value FROM meta WHERE key = 'epoch'"

#: Runs left queued, running or waiting.
UNFINISHED = f"SELECT {RUN_COLUMNS} FROM runs WHERE status IN {LIVE}"


def keep_epoch(dialect: Dialect, epoch: str) -> Statement:
    """Make ``epoch`` the database's, unless it has one already."""
    return f"INSERT INTO meta (key, value) VALUES ('epoch', {dialect.param(1)}) ON CONFLICT DO NOTHING", [epoch]


def head(dialect: Dialect, run_id: str) -> Statement:
    """A run's last position (0: it has no events)."""
    return f"SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = {dialect.param(1)}", [run_id]


def events(dialect: Dialect, run_id: str, after: int, limit: int) -> Statement:
    """``seq, type, data`` of a run's first ``limit`` events after position ``after``."""
    p = dialect.param
    return (
        f"SELECT seq, type, data FROM events WHERE run_id = {p(1)} AND seq > {p(2)} ORDER BY seq LIMIT {p(3)}",
        [run_id, after, limit],
    )


def run(dialect: Dialect, run_id: str) -> Statement:
    """A run's summary (``schema.row_to_summary``), if there is that run."""
    return f"SELECT {RUN_COLUMNS} FROM runs WHERE id = {dialect.param(1)}", [run_id]


def set_waiting(dialect: Dialect, run_id: str, waiting: bool) -> Statement:
    """A live run waits for an approval, or runs again."""
    p = dialect.param
    return (
        f"UPDATE runs SET status = {p(1)} WHERE id = {p(2)} AND status IN ('running', 'waiting')",
        ["waiting" if waiting else "running", run_id],
    )


def thread_runs(dialect: Dialect, thread: str, limit: int, before: str | None) -> Statement:
    """Summaries of a thread's last ``limit`` runs (admitted before run ``before``, if given), oldest
    first; each row ends with the run's ``num``."""
    where, params = _of_thread(dialect, thread, before)
    return (
        f"SELECT * FROM (SELECT {RUN_COLUMNS}, num FROM runs WHERE {where} ORDER BY num DESC"
        f" LIMIT {params(limit)}) t ORDER BY num",
        params.values,
    )


def thread_live(dialect: Dialect, thread: str, before: str | None) -> Statement:
    """Ids of a thread's unfinished runs (admitted before run ``before``, if given), oldest first."""
    where, params = _of_thread(dialect, thread, before, live=True)
    return f"SELECT id FROM runs WHERE {where} ORDER BY num", params.values


def _of_thread(dialect: Dialect, thread: str, before: str | None, *, live: bool = False) -> tuple[str, Params]:
    params = Params(dialect)
    where = f"thread = {params(thread)}"
    if live:
        where += f" AND status IN {LIVE}"
    if before is not None:
        where += f" AND num < (SELECT num FROM runs WHERE id = {params(before)})"
    return where, params
