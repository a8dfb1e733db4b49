"""Keeping external runs' leases, and their approvals' expiry.

A run's lease is renewed by every post of its agent (an empty batch is a heartbeat) and every poll
of its controls, on whichever instance (``Leases``). The keeper sleeps until the earliest deadline
(a lease, or an approval of a run held here), until a deadline comes nearer (``Leases.changed``),
or at most ``Leases.look_every`` where other instances set deadlines too — an idle single server
with no external run never wakes for it — then ends the runs whose lease ran out (``failed``, error
``agent_lost``, at the run's next position, its totals so far) and expires the approvals nobody
decided in time (``approval.resolved`` ``expired``, as for runwatch's own runs). Each is done
holding the run against every other instance, its copy caught up, its deadline read again: of
many instances' keepers exactly one ends a run, and never one its agent just renewed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import structlog

from runwatch.agents.events import RunFinished
from runwatch.agents.ingest import limits
from runwatch.agents.ingest.runs import ExternalRuns
from runwatch.agents.ingest.state import ExternalRun

log = structlog.get_logger()

#: The error of a run whose agent went silent past its lease.
AGENT_LOST = "agent_lost"
#: Seconds between two looks for live runs without a lease, where leases live apart from the store.
RESEED = 30.0


class LeaseKeeper:
    def __init__(self, *, runs: ExternalRuns, approval_timeout: float) -> None:
        self._runs = runs
        self._approval_timeout = approval_timeout
        self._task: asyncio.Task[None] | None = None
        self._reseed_at = time.monotonic() + RESEED

    def start(self) -> None:
        self._task = asyncio.create_task(self._sweep(), name="runwatch-ingest-leases")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _sweep(self) -> None:
        leases = self._runs.leases
        while True:
            leases.changed.clear()
            try:
                await asyncio.wait_for(leases.changed.wait(), await self._next_wait())
            except TimeoutError:
                pass
            except Exception as exc:  # (the leases' store away: look again in a while)
                log.warning("ingest.leases_unreachable", error=repr(exc))
                await asyncio.sleep(leases.look_every or 1.0)
                continue
            try:
                lost = await leases.due()
            except Exception as exc:
                log.warning("ingest.leases_unreachable", error=repr(exc))
                lost = []
            for run_id in lost:
                await self._guarded(run_id, self._lose(run_id))
            await self._tidy()
            wall = time.time()
            for run in list(self._runs.live.values()):
                if run.ended is None and run.approvals.expired(wall):
                    await self._guarded(run.id, self._expire(run, wall))

    async def _tidy(self) -> None:
        """Where copies of runs can be stale: drop those nobody uses, and every ``RESEED`` seconds
        give live runs whose lease was lost (Redis emptied) a fresh one."""
        if self._runs.sharing.fresh:
            return
        self._runs.evict_idle()
        if time.monotonic() >= self._reseed_at:
            self._reseed_at = time.monotonic() + RESEED
            await self._guarded("*", self._runs.reseed())

    @staticmethod
    async def _guarded(run_id: str, work: Awaitable[None]) -> None:
        """One run's trouble (the store away …) never stops the others'."""
        try:
            await work
        except Exception:
            log.exception("ingest.sweep_failed", run_id=run_id)

    async def _next_wait(self) -> float | None:
        """Seconds until the earliest lease or approval deadline (and ``SWEEP_SLACK``), at most
        ``look_every``; None while there is none and nobody else sets any."""
        wall = time.time()
        waits = [a.expires_at - wall for run in self._runs.live.values() for a in run.approvals.open.values()]
        if (lease := await self._runs.leases.until_next()) is not None:
            waits.append(lease)
        wait = max(0.0, min(waits)) + limits.SWEEP_SLACK if waits else None
        every = self._runs.leases.look_every
        return every if wait is None else wait if every is None else min(wait, every)

    async def _lose(self, run_id: str) -> None:
        run = await self._runs.find(run_id)
        if run is None or run.ended is not None:
            await self._runs.leases.end(run_id)  # (ended, or gone from the store: nothing to keep)
            return
        async with self._runs.held(run):
            if run.ended is not None or not await self._runs.leases.expired(run_id):
                return  # (ended elsewhere, or its agent was heard from meanwhile)
            lost = RunFinished(run_id=run_id, status="failed", error=AGENT_LOST, totals=run.final_totals())
            await self._runs.record(run, lost)
            log.warning("ingest.agent_lost", run_id=run_id, lease=run.lease_seconds)
        await self._runs.end(run)
        await self._runs.sharing.changed(run_id)

    async def _expire(self, run: ExternalRun, now: float) -> None:
        async with self._runs.held(run):
            expired = run.approvals.expired(now) if run.ended is None else []
            for approval_id in expired:
                message = f"nobody approved this call within {self._approval_timeout:g} s, so it was not made"
                await self._runs.record(run, run.approvals.resolve(run.id, approval_id, None, message))
        if expired:
            await self._runs.sharing.changed(run.id)
