"""The store contract: durable events and run summaries, written in batches off the hot path."""

from __future__ import annotations

from typing import Protocol

import msgspec

from runwatch.agents.events import Published, RunStatus


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


class RunPage(msgspec.Struct, kw_only=True):
    runs: list[RunSummary]
    next: str | None = None


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None:
        """Write everything pending, then release the database."""
        ...

    def accept(self, published: Published) -> None:
        """Queue an event for writing (bus sink); never blocks, never drops."""
        ...

    async def ready(self) -> None:
        """Backpressure: wait while more than the pending bound is queued."""
        ...

    async def flush(self) -> None:
        """Return once everything accepted before the call is durable."""
        ...

    async def events(self, run_id: str, after: int, limit: int) -> list[Published]: ...

    async def get_run(self, run_id: str) -> RunSummary | None: ...

    async def list_runs(
        self,
        *,
        status: str | None = None,
        agent: str | None = None,
        tenant: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage: ...

    async def mark_interrupted(self) -> list[Published]:
        """Finish runs left queued/running by a dead process as ``failed``/``interrupted``.

        Appends their ``run.finished`` event (next seq) and returns those events.
        """
        ...
