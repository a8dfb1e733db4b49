"""Taking over a run whose instance stopped: continued from its stored events, or ended.

A mixin of ``Supervisor``: it reads the run's history from the store and either starts the run's
task again here (a resumable agent) or publishes its end (``failed``, ``interrupted``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from runwatch.agents.events import Published, RunFinished, Totals, decode
from runwatch.agents.runs.handle import RunHandle
from runwatch.agents.runs.resume import rebuild
from runwatch.agents.store import RunSummary

log = structlog.get_logger()


class TakeOver:
    _runs: dict[str, RunHandle]
    _store: Any
    _bus: Any
    _registry: Any
    _default_model: str
    _closing: bool
    _execute: Any

    async def history(self, run_id: str) -> list[Published]:
        """Every stored event of a run, in order."""
        events: list[Published] = []
        while batch := await self._store.events(run_id, events[-1].seq if events else 0, 1_000):
            events += batch
        return events

    async def take_over(self, run: RunSummary) -> Published | None:
        """Continue a run whose instance stopped (died, or was restarted): a resumable agent's run
        goes on here from its stored events (``run.resumed``); any other ends ``failed``, error
        ``interrupted``, at the next position after everything that instance made durable."""
        agent = self._registry.find(run.agent)
        history = await self.history(run.id) if agent is not None and agent.resumable else []
        resumed = rebuild(history) if history else None
        if agent is not None and resumed is not None and not resumed.finished and not self._closing:
            model = run.model or agent.model or self._default_model
            handle = RunHandle(id=run.id, agent=agent.name, model=model, thread=run.thread or run.id)
            self._runs[handle.id] = handle
            user_input = next((decode(p.data).input for p in history if p.type == "run.queued"), run.input)
            handle.task = asyncio.create_task(self._execute(handle, user_input, resumed), name=f"run-{handle.id}")
            return None
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
