"""The overview's figures over a window of time, computed by the store (SQLite or PostgreSQL).

One ``Window`` asks; ``queries`` gives the SQL (in the store's dialect) and ``assemble`` turns their
rows into ``Figures``. Percentiles are exact (nearest rank) over the window's latest
``MAX_SAMPLES`` finished runs: a wider window is sampled, and says so (``sampled``).

**Output tokens/s** is defined once, here and in the run view (``dashboard/js/run-figures.js``) alike:
the output tokens of the steps that streamed text, over those steps' streaming time — each step's
end minus its first token, both on the events' clock (``StepFinished``: ``duration - ttft``).
Steps that only asked for tools are left out: a local model sends a whole tool call in one chunk,
and its tokens over no time would say nothing about the model's speed.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from runwatch.agents.store.dialect import Dialect, Statement
from runwatch.agents.store.schema import EXTERNAL, LIVE

#: Most runs whose durations and times to first token one overview sorts.
MAX_SAMPLES = 100_000

#: A run's output tokens of the steps that streamed text. Runs stored before ``stream_tokens`` was
#: kept have 0 there: for them, as then, all their output tokens over their streaming time.
STREAM_TOKENS = "CASE WHEN stream_tokens > 0 THEN stream_tokens WHEN stream_seconds > 0 THEN output_tokens ELSE 0 END"


class Window(msgspec.Struct, kw_only=True, frozen=True):
    since: float
    until: float
    #: Seconds per bar of ``per_minute``.
    bucket: float
    tenant: str | None = None


class Percentiles(msgspec.Struct):
    p50: float
    p95: float


class Bucket(msgspec.Struct):
    #: The bucket's start (epoch seconds).
    t: float
    runs: int
    failed: int


class ModelFigures(msgspec.Struct):
    model: str
    runs: int
    output_tokens: int
    #: Output tokens of the steps that streamed text, over their streaming time (null: none did).
    tokens_per_second: float | None
    #: USD of its priced runs; null when none of its runs was priced.
    cost: float | None
    #: Runs that called the model and have no cost (the price table did not know it): not in ``cost``.
    unpriced: int = 0


class AgentFigures(msgspec.Struct):
    agent: str
    runs: int
    failed: int
    #: USD of its priced runs; null when none of its runs was priced.
    cost: float | None
    #: Runs that called a model and have no cost (the price table did not know it): not in ``cost``.
    unpriced: int = 0
    #: An agent elsewhere reports its runs (the ingest API).
    external: bool = False


class InstanceLoad(msgspec.Struct, kw_only=True):
    """One instance's capacity: its run slots and how many of its runs hold one or wait."""

    instance: str
    slots: int
    running: int
    waiting: int = 0
    #: Runs admitted here, not yet started (a cluster's shared queue is in ``Queue``).
    queued: int = 0
    #: When the instance said so last (epoch seconds).
    seen: float


class Queue(msgspec.Struct):
    queued: int = 0
    running: int = 0
    waiting: int = 0


class Figures(msgspec.Struct, kw_only=True):
    """What the store knows of the runs created in the window (``queue``: of all runs, now)."""

    #: Runs created in the window by status, and ``total``.
    runs: dict[str, int]
    #: succeeded / (succeeded + failed + cancelled); null when none ended.
    success_rate: float | None
    per_minute: list[Bucket]
    duration: Percentiles | None
    ttft: Percentiles | None
    models: list[ModelFigures]
    agents: list[AgentFigures]
    queue: Queue
    #: True when the percentiles are of the window's latest ``MAX_SAMPLES`` runs only.
    sampled: bool = False


def queries(window: Window, dialect: Dialect) -> list[Statement]:
    """The SQL of ``assemble``'s inputs, in its order."""

    def scoped(extra: str = "") -> tuple[str, list[Any]]:
        args: list[Any] = [window.since, window.until]
        where = f"created_at >= {dialect.param(1)} AND created_at < {dialect.param(2)}"
        if window.tenant is not None:
            args.append(window.tenant)
            where += f" AND tenant = {dialect.param(3)}"
        return where + extra, args

    where, args = scoped()
    n = len(args)
    bucket = dialect.bucket(dialect.param(n + 1), dialect.param(n + 2))
    live_where, live_args = f"status IN {LIVE}", []
    if window.tenant is not None:
        live_where += f" AND tenant = {dialect.param(1)}"
        live_args.append(window.tenant)
    failed = "SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END)"
    # A run that called a model has steps; with no cost, its model had no price.
    priced = "SUM(cost), count(cost), SUM(CASE WHEN cost IS NULL AND steps > 0 THEN 1 ELSE 0 END)"
    return [
        (f"SELECT status, count(*) FROM runs WHERE {where} GROUP BY status", args),
        (
            f"SELECT {bucket} AS b, count(*), {failed} FROM runs WHERE {where} GROUP BY b",
            [*args, window.since, window.bucket],
        ),
        (
            "SELECT finished_at - started_at, ttft FROM runs"
            f" WHERE {where} AND (finished_at IS NOT NULL OR ttft IS NOT NULL)"
            f" ORDER BY num DESC LIMIT {MAX_SAMPLES + 1}",
            args,
        ),
        (
            f"SELECT model, count(*), SUM(output_tokens), SUM({STREAM_TOKENS}), SUM(stream_seconds),"
            f" {priced} FROM runs WHERE {where} GROUP BY model",
            args,
        ),
        (f"SELECT agent, count(*), {failed}, {priced}, MAX({EXTERNAL}) FROM runs WHERE {where} GROUP BY agent", args),
        (f"SELECT status, count(*) FROM runs WHERE {live_where} GROUP BY status", live_args),
    ]


def percentiles(values: list[float]) -> Percentiles | None:
    if not values:
        return None
    values.sort()

    def rank(p: float) -> float:
        return round(values[max(math.ceil(p * len(values)) - 1, 0)], 4)

    return Percentiles(p50=rank(0.5), p95=rank(0.95))


def assemble(window: Window, results: list[list[tuple]]) -> Figures:
    statuses, buckets, samples, models, agents, live = results
    runs = {status: 0 for status in ("queued", "running", "waiting", "succeeded", "failed", "cancelled")}
    for status, count in statuses:
        runs[status] = int(count)
    runs["total"] = sum(runs.values())
    ended = runs["succeeded"] + runs["failed"] + runs["cancelled"]
    counts = {int(b): (int(c), int(f)) for b, c, f in buckets}
    span = max(math.ceil((window.until - window.since) / window.bucket), 1)
    per_minute = [
        Bucket(t=window.since + i * window.bucket, runs=counts.get(i, (0, 0))[0], failed=counts.get(i, (0, 0))[1])
        for i in range(span)
    ]
    sampled = len(samples) > MAX_SAMPLES
    samples = samples[:MAX_SAMPLES]
    return Figures(
        runs=runs,
        success_rate=round(runs["succeeded"] / ended, 4) if ended else None,
        per_minute=per_minute,
        duration=percentiles([float(d) for d, _ in samples if d is not None]),
        ttft=percentiles([float(t) for _, t in samples if t is not None]),
        models=sorted(
            (
                ModelFigures(
                    model=model,
                    runs=int(count),
                    output_tokens=int(tokens or 0),
                    tokens_per_second=round(float(streamed) / float(seconds), 2) if seconds else None,
                    cost=round(float(cost), 6) if priced else None,
                    unpriced=int(unpriced or 0),
                )
                for model, count, tokens, streamed, seconds, cost, priced, unpriced in models
            ),
            key=lambda m: -m.runs,
        ),
        agents=sorted(
            (
                AgentFigures(
                    agent=agent,
                    runs=int(count),
                    failed=int(failed or 0),
                    cost=round(float(cost), 6) if priced else None,
                    unpriced=int(unpriced or 0),
                    external=bool(external),
                )
                for agent, count, failed, cost, priced, unpriced, external in agents
            ),
            key=lambda a: -a.runs,
        ),
        queue=Queue(**{status: int(count) for status, count in live}),
        sampled=sampled,
    )
