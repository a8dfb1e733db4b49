"""Taking queued runs: whenever this instance has a free slot, the next job of the shared queue.

The take loop acquires a slot first, then takes a job (leased to this instance in the same step:
see ``RunQueue.take``) and launches its run on that slot (``Slots.reserve``). It asks again at once
when the control channel says a job was queued (``wake``), else every second. A cancel that
reached this instance for a run not here yet is remembered for ``CANCEL_MEMORY_SECONDS``, in case
its job is being taken here right now.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from runwatch.agents.bus import Bus
from runwatch.agents.bus.base import Ownership
from runwatch.agents.cluster.queue import REDIS_ERRORS, Job, RunQueue
from runwatch.agents.events import RunFinished
from runwatch.agents.loop.agent import AgentRegistry
from runwatch.agents.runs.executor import Executor
from runwatch.agents.runs.handle import RunHandle
from runwatch.agents.store import Store

log = structlog.get_logger()

#: A cancel for a run not (yet) here is remembered this long, in case its job is being taken now.
CANCEL_MEMORY_SECONDS = 10.0


class Taker:
    def __init__(
        self,
        *,
        queue: RunQueue,
        ownership: Ownership,
        executor: Executor,
        bus: Bus,
        store: Store,
        registry: AgentRegistry,
        leased: Callable[[str, float], None],
    ) -> None:
        """``leased(run_id, at)``: told when a job's lease was taken (monotonic time)."""
        self._queue = queue
        self._ownership = ownership
        self._executor = executor
        self._bus = bus
        self._store = store
        self._registry = registry
        self._leased = leased
        self._wake = asyncio.Event()
        self._cancelled: dict[str, float] = {}
        self._loop: asyncio.Task[None] | None = None

    def open(self) -> None:
        self._loop = asyncio.create_task(self._take_loop(), name="runwatch-take")

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)

    def wake(self) -> None:
        """A job may be waiting: ask the queue now."""
        self._wake.set()

    def cancelled(self, run_id: str) -> None:
        """``run_id`` was asked to be cancelled while not here: cancel it if it is taken here soon."""
        now = time.monotonic()
        self._cancelled = {r: t for r, t in self._cancelled.items() if t > now} | {run_id: now + CANCEL_MEMORY_SECONDS}

    async def _take_loop(self) -> None:
        slots = self._executor.slots
        while not self._executor.closing:
            await slots.acquire()
            taken = None
            try:
                while taken is None and not self._executor.closing:
                    self._wake.clear()
                    asked = time.monotonic()
                    try:
                        taken = await self._queue.take()
                    except REDIS_ERRORS:
                        await asyncio.sleep(0.5)
                        continue
                    if taken is None:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), 1.0)
            finally:
                if taken is None:
                    slots.release()
            if taken is not None:
                self.launch(*taken, leased_at=asked)

    def launch(self, job: Job, cancelled: bool, *, leased_at: float) -> None:
        """Execute the run of a job just taken, on the slot acquired for it (``cancelled``: a cancel
        waits for it); a job for an agent this instance does not have ends its run instead."""
        self._ownership.unfence(job.run_id)
        if self._registry.find(job.agent) is None:
            self._executor.slots.release()
            self._ownership.spawn(self._reject(job), f"reject-{job.run_id}")
            return
        handle = RunHandle(id=job.run_id, agent=job.agent, model=job.model, thread=job.thread or job.run_id)
        handle.queued_at = time.monotonic() - max(0.0, time.time() - job.queued_at)
        self._executor.slots.reserve(handle.id)
        self._leased(handle.id, leased_at)
        self._executor.launch(handle, job.input, resume=job.resume)
        if cancelled or self._cancelled.pop(job.run_id, 0) > time.monotonic():
            handle.cancel_requested = True
            self._executor.cancel_soon(handle)

    async def _reject(self, job: Job) -> None:
        """A job for an agent this instance does not have: the run ends, saying why."""
        instance = self._executor.instance
        error = f"instance {instance} has no agent {job.agent!r}; every instance needs the same RUNWATCH_AGENTS"
        log.error("run.unknown_agent", run_id=job.run_id, agent=job.agent)
        try:
            await self._bus.publish(RunFinished(run_id=job.run_id, status="failed", error=error))
            await self._store.flush()
        finally:
            self._ownership.disown(job.run_id)
            await self._queue.release(job.run_id)
