"""The store contract: durable events and run summaries, written in batches off the hot path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

import msgspec

from runwatch.agents.bus.base import Journal
from runwatch.agents.events import RunStatus

if TYPE_CHECKING:  # (aggregates and activity build on this module)
    from runwatch.agents.store.activity import Activity
    from runwatch.agents.store.aggregates import Figures, Window


class RunSummary(msgspec.Struct, kw_only=True):
    """One run as the runs list shows it; kept up to date from the run's events."""

    id: str
    agent: str
    tenant: str = "default"
    input: str = ""
    model: str = ""
    offline: bool = False
    status: RunStatus = RunStatus.QUEUED
    error: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0
    steps: int = 0
    last_seq: int = 0
    #: The conversation the run belongs to (``GET /api/threads/{thread}``).
    thread: str = ""
    #: USD of its steps so far (the price table's); null while none was priced.
    cost: float | None = None
    #: The first ``PREVIEW`` characters of a succeeded run's final answer.
    answer_preview: str | None = None
    #: Its first step's time to first token, seconds.
    ttft: float | None = None
    #: An agent running elsewhere executes it and reports it (the ingest API: docs/ingest.md).
    external: bool = False


#: Characters of a run's answer its summary shows.
PREVIEW = 280


Sort = Literal["created", "duration", "tokens", "cost"]
Order = Literal["desc", "asc"]


class RunQuery(msgspec.Struct, kw_only=True, frozen=True):
    """Which runs, in which order, from where. ``None`` filters nothing."""

    q: str | None = None
    status: str | None = None
    agent: str | None = None
    model: str | None = None
    tenant: str | None = None
    #: Runs created at or after / before these times (epoch seconds).
    since: float | None = None
    until: float | None = None
    sort: Sort = "created"
    order: Order = "desc"
    limit: int = 50
    #: A page's ``next``, opaque to clients.
    cursor: str | None = None


class RunPage(msgspec.Struct, kw_only=True):
    runs: list[RunSummary]
    #: The cursor of the next (older) page, or null.
    next: str | None = None
    #: The runs feed's position this page is valid at: subscribe to ``"*"`` with ``after`` = it (and
    #: ``epoch`` = ``feed_epoch``) to get every lifecycle event since, with none missed.
    feed: int = 0
    feed_epoch: str = ""


class StoreUnavailable(Exception):
    """The database cannot be opened or used; the message says which and why."""


class Store(Journal, Protocol):
    """Durable history: the bus's journal (see ``Journal``) plus run summaries.

    Reads never wait for pending writes: the bus shows nothing before it is durable.
    """

    async def open(self) -> None:
        """Open (creating if needed) the database; raises ``StoreUnavailable``."""
        ...

    async def close(self) -> None:
        """Write everything pending, then release the database."""
        ...

    async def flush(self) -> None:
        """Return once everything appended before the call is durable."""
        ...

    def keep_answer(self, run_id: str, answer: str) -> None:
        """A succeeded run's final answer, written with its ``run.finished`` (which must follow)."""
        ...

    async def get_run(self, run_id: str) -> RunSummary | None: ...

    async def list_runs(self, query: RunQuery) -> RunPage:
        """A page of runs as ``query`` asks (see ``agents.store.run_query``); ``BadRequest`` for a
        cursor this listing did not give."""
        ...

    async def overview(self, window: Window) -> Figures:
        """The figures of the runs created in ``window`` (see ``agents.store.aggregates``)."""
        ...

    async def agent_activity(self, window: Window, lost: str) -> Activity:
        """Each agent's runs created in ``window`` and live now (see ``agents.store.activity``);
        ``lost``: the error of a run that ended because its agent stopped reporting."""
        ...

    async def admit(self, run_id: str, tenant: str, limit: int) -> int:
        """Count ``tenant``'s active runs (queued, running, waiting, or admitted and not yet
        written) and, if fewer than ``limit``, count ``run_id`` among them from now on — in one
        atomic step (see ``agents.store.admission``). Returns the count before: ``run_id`` was
        admitted if and only if it is below ``limit``."""
        ...

    async def unadmit(self, run_id: str) -> None:
        """Stop counting an admitted run that was not started after all (its ``run.queued`` unpublished)."""
        ...

    async def thread_runs(self, thread: str, limit: int = 100, before: str | None = None) -> list[RunSummary]:
        """The last ``limit`` runs of a thread (admitted before run ``before``, if given), oldest
        first; none: no such thread."""
        ...

    async def thread_live(self, thread: str, before: str | None = None) -> list[str]:
        """The ids of a thread's runs that have not finished (admitted before run ``before``, if
        given), oldest first: a cheap query, polled while a run waits for its turn."""
        ...

    async def unfinished_runs(self) -> list[RunSummary]:
        """Runs left queued, running or waiting (by a process that died): the caller finishes them."""
        ...

    async def delete_finished(self, before: float, limit: int = 1_000) -> int:
        """Retention: delete up to ``limit`` runs that finished before ``before`` (epoch seconds),
        oldest first, with all their events; returns how many. Live runs are never touched."""
        ...
