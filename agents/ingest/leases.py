"""Keeping external runs' leases, and their approvals' expiry.

A run's lease is renewed by every post of its agent (an empty batch is a heartbeat) and every poll
of its controls. The keeper sleeps until the earliest deadline of a live run (lease or approval),
or until a run or an approval is added (``ExternalRuns.changed``) — an idle server with no external
run never wakes for it — then ends the runs whose lease ran out (``failed``, error
``agent_lost``, at the run's next position, its totals so far) and expires the approvals nobody
decided in time (``approval.resolved`` ``expired``, as for runwatch's own runs).
"""

from __future__ import annotations

import asyncio
import time

import structlog

from runwatch.agents.bus import Bus
from runwatch.agents.events import RunFinished
from runwatch.agents.ingest import limits
from runwatch.agents.ingest.runs import ExternalRuns
from runwatch.agents.ingest.state import ExternalRun

log = structlog.get_logger()

#: The error of a run whose agent went silent past its lease.
AGENT_LOST = "agent_lost"


class LeaseKeeper:
    def __init__(self, *, runs: ExternalRuns, bus: Bus, approval_timeout: float) -> None:
        self._runs = runs
        self._bus = bus
        self._approval_timeout = approval_timeout
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._sweep(), name="runwatch-ingest-leases")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _sweep(self) -> None:
        changed = self._runs.changed
        while True:
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), self._next_wait())
            except TimeoutError:
                pass
            now, wall = time.monotonic(), time.time()
            for run in list(self._runs.live.values()):
                try:
                    if run.deadline <= now:
                        await self._lose(run)
                    elif run.approvals.expired(wall):
                        await self._expire(run, wall)
                except Exception:  # one run's trouble (the store away …) never stops the others'
                    log.exception("ingest.sweep_failed", run_id=run.id)

    def _next_wait(self) -> float | None:
        """Seconds until the earliest lease or approval deadline of a live run (and ``SLACK``);
        None while there is no live run."""
        now, wall = time.monotonic(), time.time()
        waits = [run.deadline - now for run in self._runs.live.values()]
        waits += [a.expires_at - wall for run in self._runs.live.values() for a in run.approvals.open.values()]
        return max(0.0, min(waits)) + limits.SWEEP_SLACK if waits else None

    async def _lose(self, run: ExternalRun) -> None:
        async with run.lock:
            if run.ended is not None or run.deadline > time.monotonic():
                return  # (its agent posted while the lock was taken)
            event = RunFinished(run_id=run.id, status="failed", error=AGENT_LOST, totals=run.final_totals())
            run.apply(await self._bus.publish(event), event)
            await self._bus.settled(run.id)
            log.warning("ingest.agent_lost", run_id=run.id, lease=run.lease_seconds)
            self._runs.end(run)

    async def _expire(self, run: ExternalRun, now: float) -> None:
        async with run.lock:
            for approval_id in run.approvals.expired(now) if run.ended is None else []:
                message = f"nobody approved this call within {self._approval_timeout:g} s, so it was not made"
                event = run.approvals.resolve(run.id, approval_id, None, message)
                run.apply(await self._bus.publish(event), event)
