"""Each agent's runs over a window of time, computed by the store (SQLite or PostgreSQL): what the
dashboard's Agents page shows (``GET /api/agents/activity``).

As the overview's figures (``aggregates``): one ``Window`` asks (its ``bucket`` is not used),
``queries`` gives the SQL in the store's dialect and ``assemble`` turns the rows into ``Activity``.
An agent is its name and whether it is external (an agent elsewhere reports its runs: the ingest
API); runwatch's own agents and external ones never share a name. Counts are of the runs created in
the window, as the overview's are; ``queued`` and ``running`` are of every run live now, whenever it
was created. Durations (``finished_at - started_at``) are exact nearest-rank percentiles over the
window's latest ``MAX_SAMPLES`` finished runs, as the overview's.
"""

from __future__ import annotations

from collections import defaultdict

import msgspec

from runwatch.agents.store.aggregates import MAX_SAMPLES, Percentiles, Window, percentiles
from runwatch.agents.store.dialect import Dialect, Params, Statement
from runwatch.agents.store.schema import EXTERNAL, LIVE


class AgentActivity(msgspec.Struct, kw_only=True):
    agent: str
    external: bool
    #: Runs created in the window, and how those that ended ended.
    runs: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    #: Its runs queued, and running or waiting for a person, now.
    queued: int = 0
    running: int = 0
    #: The durations of its runs that ended in the window (null: none did).
    duration: Percentiles | None = None
    #: The latest time one of its runs was created, started or ended — an end runwatch gave a run
    #: whose agent went silent (``lost``) is not counted: its agent did nothing then.
    last_active: float | None = None
    #: When the latest of its runs created in the window ended because its agent went silent.
    lost_at: float | None = None


class Activity(msgspec.Struct, kw_only=True):
    #: Every agent with a run created in the window or live now, most runs first.
    agents: list[AgentActivity]
    #: True when the durations are of the window's latest ``MAX_SAMPLES`` runs only.
    sampled: bool = False


def queries(window: Window, lost: str, dialect: Dialect) -> list[Statement]:
    """The SQL of ``assemble``'s inputs, in its order. ``lost``: the error of a run that ended
    because its agent stopped reporting (the ingest API's ``agent_lost``)."""

    def scoped(params: Params, *, live: bool = False) -> str:
        if live:
            where = f"status IN {LIVE}"
        else:
            where = f"created_at >= {params(window.since)} AND created_at < {params(window.until)}"
        if window.tenant is not None:
            where += f" AND tenant = {params(window.tenant)}"
        return where

    def count(status: str) -> str:
        return f"SUM(CASE WHEN status = '{status}' THEN 1 ELSE 0 END)"

    runs = Params(dialect)
    where = scoped(runs)
    is_lost = f"status = 'failed' AND error = {runs(lost)}"
    ended = f"CASE WHEN NOT ({is_lost}) OR error IS NULL THEN finished_at END"
    live = Params(dialect)
    live_where = scoped(live, live=True)
    samples = Params(dialect)
    samples_where = scoped(samples)
    return [
        (
            f"SELECT agent, {EXTERNAL}, count(*), {count('succeeded')}, {count('failed')}, {count('cancelled')},"
            f" MAX(created_at), MAX(started_at), MAX({ended}), MAX(CASE WHEN {is_lost} THEN finished_at END)"
            f" FROM runs WHERE {where} GROUP BY 1, 2",
            runs.values,
        ),
        (
            f"SELECT agent, {EXTERNAL}, {count('queued')}, SUM(CASE WHEN status <> 'queued' THEN 1 ELSE 0 END),"
            f" MAX(COALESCE(started_at, created_at)) FROM runs WHERE {live_where} GROUP BY 1, 2",
            live.values,
        ),
        (
            f"SELECT agent, {EXTERNAL}, finished_at - started_at FROM runs"
            f" WHERE {samples_where} AND finished_at IS NOT NULL AND started_at IS NOT NULL"
            f" ORDER BY num DESC LIMIT {MAX_SAMPLES + 1}",
            samples.values,
        ),
    ]


def _latest(*times: float | None) -> float | None:
    known = [float(t) for t in times if t is not None]
    return max(known) if known else None


def assemble(results: list[list[tuple]]) -> Activity:
    window_rows, live_rows, samples = results
    agents: dict[tuple[str, bool], AgentActivity] = {}

    def of(agent: str, external: int) -> AgentActivity:
        key = (agent, bool(external))
        if key not in agents:
            agents[key] = AgentActivity(agent=agent, external=bool(external))
        return agents[key]

    for agent, external, runs, succeeded, failed, cancelled, created, started, ended, lost in window_rows:
        a = of(agent, external)
        a.runs, a.succeeded, a.failed, a.cancelled = (int(n or 0) for n in (runs, succeeded, failed, cancelled))
        a.last_active = _latest(created, started, ended)
        a.lost_at = float(lost) if lost is not None else None
    for agent, external, queued, running, started in live_rows:
        a = of(agent, external)
        a.queued, a.running = int(queued or 0), int(running or 0)
        a.last_active = _latest(a.last_active, started)
    sampled = len(samples) > MAX_SAMPLES
    durations: dict[tuple[str, bool], list[float]] = defaultdict(list)
    for agent, external, duration in samples[:MAX_SAMPLES]:
        durations[(agent, bool(external))].append(float(duration))
    for key, values in durations.items():
        if key in agents:
            agents[key].duration = percentiles(values)
    ordered = sorted(agents.values(), key=lambda a: (-a.runs, -(a.queued + a.running), a.agent))
    return Activity(agents=ordered, sampled=sampled)
