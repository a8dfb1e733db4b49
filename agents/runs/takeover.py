"""Taking over a run whose instance stopped: continued from its stored events, or ended.

``TakeOver`` reads the run's history from the store and either has the run continued here (a
resumable agent's: ``continue_here``, the executor's) or publishes its end (``failed``,
``interrupted``) at the next position after everything that instance made durable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import structlog

from runwatch.agents.bus import Bus
from runwatch.agents.events import Published, RunFinished, RunQueued, Totals, decode
from runwatch.agents.loop.agent import AgentRegistry
from runwatch.agents.runs.handle import RunHandle
from runwatch.agents.runs.resume import Resumed, history, rebuild
from runwatch.agents.store import RunSummary, Store

log = structlog.get_logger()

#: Continue a run here from where it was (its handle, its input, its rebuilt conversation); False
#: if this instance takes no run any more (it is shutting down): the run is ended instead.
ContinueHere = Callable[[RunHandle, str, Resumed], bool]


def _queued(events: list[Published]) -> Iterator[RunQueued]:
    """The run's ``run.queued`` among its events (what it was asked)."""
    for p in events:
        if p.type == "run.queued" and isinstance(event := decode(p.data), RunQueued):
            yield event


class TakeOver:
    def __init__(
        self, *, bus: Bus, store: Store, registry: AgentRegistry, default_model: str, continue_here: ContinueHere
    ) -> None:
        self._bus = bus
        self._store = store
        self._registry = registry
        self._default_model = default_model
        self._continue_here = continue_here

    async def take_over(self, run: RunSummary) -> Published | None:
        """Continue a run whose instance stopped (died, or was restarted): a resumable agent's run
        goes on here from its stored events (``run.resumed``; returns None); any other ends
        ``failed``, error ``interrupted`` (returns that ``run.finished``)."""
        agent = self._registry.find(run.agent)
        events = await history(self._store, run.id) if agent is not None and agent.resumable else []
        resumed = rebuild(events) if events else None
        if agent is not None and resumed is not None and not resumed.finished:
            model = run.model or agent.model or self._default_model
            handle = RunHandle(id=run.id, agent=agent.name, model=model, thread=run.thread or run.id)
            user_input = next((e.input for e in _queued(events)), run.input)
            if self._continue_here(handle, user_input, resumed):
                return None
        return await self._interrupted(run)

    async def _interrupted(self, run: RunSummary) -> Published:
        since = run.started_at or run.created_at
        published = await self._bus.publish(
            RunFinished(
                run_id=run.id,
                status="failed",
                error="interrupted",
                totals=Totals(
                    input_tokens=run.input_tokens,
                    output_tokens=run.output_tokens,
                    tool_calls=run.tool_calls,
                    steps=run.steps,
                    duration=round(max(0.0, time.time() - since), 3),
                    cost=run.cost,
                ),
            )
        )
        log.warning("run.interrupted", run_id=run.id, seq=published.seq)
        return published

    async def recover(self) -> list[Published]:
        """Take over every run a dead process left queued or running (one process, no Redis): a
        resumable agent's run continues here; the others end ``failed``, error ``interrupted``.

        Their events take the next positions after everything that process made durable, which is
        everything any watcher was shown.
        """
        finished = []
        for run in await self._store.unfinished_runs():
            if run.external:  # executed elsewhere: its agent goes on (``agents/ingest`` takes it back)
                continue
            if (published := await self.take_over(run)) is not None:
                finished.append(published)
        await self._store.flush()
        return finished
