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

The ``LeaseKeeper`` is a part of ``ClusterSupervisor`` (``agents/cluster/supervisor.py``), given
what it works on: the queue, the bus's ownership of runs, the runs executing here (``Executor``),
and the ``TakeOver`` that ends a dead owner's run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from runwatch.agents.bus.base import Ownership
from runwatch.agents.cluster.queue import REDIS_ERRORS, RunQueue, resume_job
from runwatch.agents.loop.agent import AgentRegistry
from runwatch.agents.runs.executor import Executor
from runwatch.agents.runs.handle import RunHandle
from runwatch.agents.runs.takeover import TakeOver
from runwatch.agents.store import Store
from runwatch.agents.store.aggregates import InstanceLoad

log = structlog.get_logger()

#: How often the store is swept for runs that lost both their lease and their place in the queue.
ORPHAN_SWEEP_SECONDS = 30.0
#: An owner holds a run (publishes nothing more of it) once its lease has not been renewed for this
#: share of ``lease_seconds``; leases last 3/4 of it, so it holds before anyone else may claim the run.
HOLD_AFTER = 0.6


class LeaseKeeper:
    def __init__(
        self,
        *,
        queue: RunQueue,
        ownership: Ownership,
        executor: Executor,
        store: Store,
        registry: AgentRegistry,
        take_over: TakeOver,
        load: Callable[[], InstanceLoad],
        lease_seconds: float,
    ) -> None:
        """``load``: this instance's capacity, announced with each renewal."""
        self._queue = queue
        self._ownership = ownership
        self._executor = executor
        self._store = store
        self._registry = registry
        self._take_over = take_over
        self._load = load
        self._lease = lease_seconds
        #: run id → when (monotonic) its lease was last written: taken or renewed.
        self._leased_at: dict[str, float] = {}
        #: Runs being handed over at a drain: their leases are renewed until they are queued again.
        self._handing: set[str] = set()
        self._grace_until = 0.0
        self._renew_now = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        #: Runs waiting in the shared queue (all instances), as of the last renewal.
        self.queued = 0

    def open(self) -> None:
        """Start renewing and holding; owners get a whole lease to renew before anything here
        calls their runs dead."""
        self._grace_until = time.monotonic() + self._lease
        self._loops = [
            asyncio.create_task(self._lease_loop(), name="runwatch-leases"),
            asyncio.create_task(self._hold_loop(), name="runwatch-hold"),
        ]

    async def close(self) -> None:
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)

    def leased(self, run_id: str, at: float) -> None:
        """This instance took ``run_id``'s lease at ``at`` (monotonic)."""
        self._leased_at[run_id] = at

    # -- renewing and holding -------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        period = max(0.1, self._lease / 4)
        next_sweep = time.monotonic() + self._lease
        while True:
            with contextlib.suppress(TimeoutError):  # every period, and at once when Redis is back
                await asyncio.wait_for(self._renew_now.wait(), period)
            self._renew_now.clear()
            try:
                async with asyncio.timeout(period):
                    await self.renew()
            except (*REDIS_ERRORS, TimeoutError) as exc:
                log.warning("leases.renew_failed", error=repr(exc))
                self._grace_until = time.monotonic() + self._lease
            try:
                if not self._ownership.healthy:
                    self._grace_until = time.monotonic() + self._lease
                    continue
                if self._executor.closing or time.monotonic() < self._grace_until:
                    continue
                for run_id in await self._queue.expired():
                    if run_id not in self._executor.runs and await self._queue.claim(run_id):
                        await self._recover(run_id)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + ORPHAN_SWEEP_SECONDS
                    await self._sweep_orphans()
            except REDIS_ERRORS as exc:
                log.warning("leases.redis_failed", error=repr(exc))
                self._grace_until = time.monotonic() + self._lease
            except Exception:
                log.exception("leases.failed")

    def reconnected(self) -> None:
        """Redis is back (maybe empty): renew our leases now, and claim nothing for a whole lease,
        so that every live owner renews (re-claims) its leases first."""
        self._grace_until = max(self._grace_until, time.monotonic() + self._lease)
        self._renew_now.set()

    async def _hold_loop(self) -> None:
        """On a timer of its own, so a renewal that hangs cannot delay it past the lease."""
        while True:
            await asyncio.sleep(max(0.05, self._lease / 8))
            self.hold_stale()

    async def renew(self) -> None:
        """Renew the leases of the runs executing (or being handed over) here; stop those whose
        lease is another instance's now, let held ones go on; count the queue, announce our load."""
        started = time.monotonic()
        runs = self._executor.runs
        mine = [h.id for h in self._executor.live()] + [r for r in self._handing if r not in runs]
        lost = set(await self._queue.renew(mine))
        for run_id in mine:
            if run_id in lost:
                if (handle := runs.get(run_id)) is not None:
                    self.stop_here(handle, "lease lost")
            elif run_id in self._leased_at:
                self._leased_at[run_id] = started
                if self._ownership.holding(run_id):
                    log.info("run.unheld", run_id=run_id, hint="its lease is renewed: it goes on")
                    self._ownership.unhold(run_id)
        self.queued = await self._queue.size()
        with contextlib.suppress(*REDIS_ERRORS):  # (the leases are renewed: that is what counts)
            await self._queue.announce(self._load())

    def hold_stale(self) -> None:
        """Hold every run whose lease may run out soon: before anyone else may claim it."""
        limit = time.monotonic() - HOLD_AFTER * self._lease
        for handle in self._executor.live():
            if self._leased_at.get(handle.id, limit) < limit and not self._ownership.holding(handle.id):
                log.warning("run.held", run_id=handle.id, hint="its lease is not renewed: it goes on once it is")
                self._ownership.hold(handle.id)

    def on_fenced(self, run_id: str) -> None:
        """The store refused our position in ``run_id``: another instance owns it."""
        handle = self._executor.runs.get(run_id)
        if handle is not None and not handle.handed_over:
            self.stop_here(handle, "position conflict")

    def stop_here(self, handle: RunHandle, reason: str) -> None:
        """Stop executing a run another instance may own now: no further event of it from here."""
        log.error("run.stopped_here", run_id=handle.id, reason=reason)
        handle.handed_over = True
        handle.cancel_reason = reason
        self._ownership.fence(handle.id)
        self._executor.cancel_soon(handle)

    # -- letting go -----------------------------------------------------------------------------

    async def let_go(self, handle: RunHandle) -> None:
        """A run's task here is over: give up its lease — queued again first if it was handed over
        at a drain; kept if it was stopped here (another instance owns it: not ours to give up)."""
        if self._executor.runs.get(handle.id) is None:  # (not taken here again meanwhile)
            self._leased_at.pop(handle.id, None)
        try:
            if handle.handed_over and handle.cancel_reason == "handed over":
                # Drained: its events in Redis first, then queued again for another instance, and
                # only then is our lease (renewed meanwhile) given up: it is never without both.
                self._handing.add(handle.id)
                try:
                    await self._ownership.release(handle.id)
                    summary = await self._store.get_run(handle.id)
                    await self._queue.requeue(resume_job(handle.id, handle.agent, handle.model, summary))
                finally:
                    self._handing.discard(handle.id)
                    self._ownership.disown(handle.id)
            elif not handle.handed_over:
                await self._queue.release(handle.id)
        except (*REDIS_ERRORS, TimeoutError) as exc:
            log.warning("run.release_failed", run_id=handle.id, error=repr(exc))  # the lease runs out instead

    # -- dead owners ----------------------------------------------------------------------------

    async def _recover(self, run_id: str) -> None:
        """A run whose owner is gone, now leased to us: queued again to be resumed, or ended."""
        summary = await self._store.get_run(run_id)
        if summary is None or summary.status.finished:
            await self._queue.release(run_id)
            return
        log.warning("run.owner_gone", run_id=run_id, status=summary.status.value)
        agent = self._registry.find(summary.agent)
        if agent is not None and agent.resumable and not self._executor.closing:
            await self._queue.requeue(resume_job(run_id, agent.name, summary.model, summary))
            return
        self._ownership.unfence(run_id)
        try:
            await self._take_over.take_over(summary)  # ``failed``, ``interrupted``
            await self._store.flush()
        finally:
            self._ownership.disown(run_id)
        await self._queue.release(run_id)

    async def _sweep_orphans(self) -> None:
        now = time.time()
        for run in await self._store.unfinished_runs():
            if run.external:  # executed elsewhere: its agent's lease ends it (agents/ingest)
                continue
            if run.id in self._executor.runs or now - run.created_at < self._lease:
                continue
            if await self._queue.queued(run.id) or await self._queue.owner(run.id) is not None:
                continue
            if await self._queue.is_admitting(run.id):
                continue
            if await self._queue.claim(run.id):
                await self._recover(run.id)
