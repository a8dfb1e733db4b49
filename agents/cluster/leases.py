"""Keeping a cluster's run leases: renew ours, hold runs whose lease we may have lost, and take
over the runs of instances that stopped renewing theirs.

A lease lasts 3/4 of ``lease_seconds`` and is renewed every quarter of it. An owner that has not
renewed a run's lease for ``HOLD_AFTER`` of it (Redis unreachable, or this instance cut off from
it) *holds* the run: publishes nothing more of it, before anyone else may claim it. The run is not
stopped: the first renewal that succeeds lets it go on — Redis came back, with its keys or empty
(a lease Redis forgot is ours again: see ``run_queue``), and nobody claimed it, because every other
instance waits a whole lease after it reconnects before it claims anything. Only a renewal that
finds the lease another instance's (this one alone was cut off, for longer than the lease) stops
the run here; that instance continues or ends it.

A mixin of ``ClusterSupervisor`` (``agents/cluster/supervisor.py``), which holds the state it uses: the queue,
the runs executing here and when each lease was last written.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog
from redis.exceptions import RedisError

from runwatch.agents.bus.base import Ownership
from runwatch.agents.runs.handle import RunHandle

log = structlog.get_logger()

#: How often the store is swept for runs that lost both their lease and their place in the queue.
ORPHAN_SWEEP_SECONDS = 30.0
#: An owner holds a run (publishes nothing more of it) once its lease has not been renewed for this
#: share of ``lease_seconds``; leases last 3/4 of it, so it holds before anyone else may claim the run.
HOLD_AFTER = 0.6

#: What a lost or failing Redis raises.
REDIS_ERRORS = (RedisError, OSError)


class Leases:
    _lease: float
    _queue: Any
    _redis_bus: Ownership
    _runs: dict[str, RunHandle]
    _leased_at: dict[str, float]
    _handing: set[str]
    _grace_until: float
    _renew_now: asyncio.Event
    _queued_now: int
    _closing: bool
    _registry: Any
    _store: Any
    load: Any  # Supervisor.load

    # -- leases ---------------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        period = max(0.1, self._lease / 4)
        next_sweep = time.monotonic() + self._lease
        while True:
            with contextlib.suppress(TimeoutError):  # every period, and at once when Redis is back
                await asyncio.wait_for(self._renew_now.wait(), period)
            self._renew_now.clear()
            try:
                async with asyncio.timeout(period):
                    await self._renew()
            except (*REDIS_ERRORS, TimeoutError) as exc:
                log.warning("leases.renew_failed", error=repr(exc))
                self._grace_until = time.monotonic() + self._lease
            try:
                if not self._redis_bus.healthy:
                    self._grace_until = time.monotonic() + self._lease
                    continue
                if self._closing or time.monotonic() < self._grace_until:
                    continue
                for run_id in await self._queue.expired():
                    if run_id not in self._runs and await self._queue.claim(run_id):
                        await self._recover(run_id)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + ORPHAN_SWEEP_SECONDS
                    await self._sweep_orphans()
            except REDIS_ERRORS as exc:
                log.warning("leases.redis_failed", error=repr(exc))
                self._grace_until = time.monotonic() + self._lease
            except Exception:
                log.exception("leases.failed")

    def _reconnected(self) -> None:
        """Redis is back (maybe empty): renew our leases now, and claim nothing for a whole lease,
        so that every live owner renews (re-claims) its leases first."""
        self._grace_until = max(self._grace_until, time.monotonic() + self._lease)
        self._renew_now.set()

    async def _hold_loop(self) -> None:
        """On a timer of its own, so a renewal that hangs cannot delay it past the lease."""
        while True:
            await asyncio.sleep(max(0.05, self._lease / 8))
            self._hold_stale()

    def _live(self) -> list[RunHandle]:
        return [h for h in self._runs.values() if h.task is not None and not h.task.done() and not h.handed_over]

    async def _renew(self) -> None:
        started = time.monotonic()
        mine = [h.id for h in self._live()] + [r for r in self._handing if r not in self._runs]
        lost = set(await self._queue.renew(mine))
        for run_id in mine:
            if run_id in lost:
                if (handle := self._runs.get(run_id)) is not None:
                    self._stop_here(handle, "lease lost")
            elif run_id in self._leased_at:
                self._leased_at[run_id] = started
                if self._redis_bus.holding(run_id):
                    log.info("run.unheld", run_id=run_id, hint="its lease is renewed: it goes on")
                    self._redis_bus.unhold(run_id)
        self._queued_now = await self._queue.size()
        with contextlib.suppress(*REDIS_ERRORS):  # (the leases are renewed: that is what counts)
            await self._queue.announce(self.load())

    def _hold_stale(self) -> None:
        """Hold every run whose lease may run out soon: before anyone else may claim it."""
        limit = time.monotonic() - HOLD_AFTER * self._lease
        for handle in self._live():
            if self._leased_at.get(handle.id, limit) < limit and not self._redis_bus.holding(handle.id):
                log.warning("run.held", run_id=handle.id, hint="its lease is not renewed: it goes on once it is")
                self._redis_bus.hold(handle.id)

    def _on_fenced(self, run_id: str) -> None:
        handle = self._runs.get(run_id)
        if handle is not None and not handle.handed_over:
            self._stop_here(handle, "position conflict")

    def _stop_here(self, handle: RunHandle, reason: str) -> None:
        """Stop executing a run another instance may own now: no further event of it from here."""
        log.error("run.stopped_here", run_id=handle.id, reason=reason)
        handle.handed_over = True
        handle.cancel_reason = reason
        self._redis_bus.fence(handle.id)
        self._cancel_soon(handle)

    async def _recover(self, run_id: str) -> None:
        """A run whose owner is gone, now leased to us: queued again to be resumed, or ended."""
        summary = await self._store.get_run(run_id)
        if summary is None or summary.status.finished:
            await self._queue.release(run_id)
            return
        log.warning("run.owner_gone", run_id=run_id, status=summary.status.value)
        agent = self._registry.find(summary.agent)
        if agent is not None and agent.resumable and not self._closing:
            await self._requeue_to_resume(run_id, agent.name, summary.model, summary)
            return
        self._redis_bus.unfence(run_id)
        try:
            await self.take_over(summary)  # ``failed``, ``interrupted``
            await self._store.flush()
        finally:
            self._redis_bus.disown(run_id)
        await self._queue.release(run_id)

    async def _sweep_orphans(self) -> None:
        now = time.time()
        for run in await self._store.unfinished_runs():
            if run.id in self._runs or now - run.created_at < self._lease:
                continue
            if await self._queue.queued(run.id) or await self._queue.owner(run.id) is not None:
                continue
            if await self._queue.is_admitting(run.id):
                continue
            if await self._queue.claim(run.id):
                await self._recover(run.id)
