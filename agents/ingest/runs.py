"""The external runs this process holds a copy of, and how a request finds the one it is about.

A run is *reported* by the principal that registered it (in its tenant) or by an admin; to anyone
else it answers exactly as a run that does not exist (``unknown_run``). A run this process holds
no copy of is rebuilt from the store: live, it is adopted (its agent may post to any instance, and
this one may have restarted); ended, it answers as ended; unknown or not external, as unknown.

Where other instances may add to a run (``Sharing.fresh`` False), a copy is caught up from the
store under the run's lock and ``Sharing.exclusive`` (``held``) before it is acted on; a copy that
may hold what the store does not (its section failed after it published) is dropped, to be
rebuilt; and copies nobody used for ``IDLE_COPY`` are dropped too (``evict_idle``: another
instance may be the one its agent talks to, and it may end there).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import structlog

from runwatch.agents.bus import Bus
from runwatch.agents.errors import RunAlreadyFinished, UnknownRun
from runwatch.agents.events import Event, Published, decode
from runwatch.agents.identity import Principal, Role
from runwatch.agents.ingest import limits
from runwatch.agents.ingest.shared import Leases, Sharing
from runwatch.agents.ingest.state import ExternalRun, rebuild
from runwatch.agents.store import Store

log = structlog.get_logger()

#: Stored events read at a time, catching a run up or rebuilding it.
PAGE = 1_000
#: How often a run tells ``Leases.seen`` that its agent was heard from, at most, in seconds.
SEEN_EVERY = 1.0
#: Seconds a copy of a run may go unused before it is dropped (where copies can be stale); at
#: least twice its lease.
IDLE_COPY = 60.0


class ExternalRuns:
    __slots__ = ("_bus", "_store", "closing", "leases", "live", "sharing")

    def __init__(self, store: Store, bus: Bus, sharing: Sharing, leases: Leases) -> None:
        self._store = store
        self._bus = bus
        self.sharing = sharing
        self.leases = leases
        #: The live external runs this process holds a copy of, by id.
        self.live: dict[str, ExternalRun] = {}
        #: Set when the server shuts down: long polls answer at once.
        self.closing = False

    async def add(self, run: ExternalRun) -> None:
        """Hold ``run`` here, its lease started (a new run, or one registered again)."""
        self.live[run.id] = run
        await self.leases.start(run.id, run.lease_seconds)

    async def renew(self, run: ExternalRun) -> None:
        """Its agent was heard from: renew its lease (and take the length every instance knows)."""
        run.used = now = time.monotonic()
        seconds = await self.leases.renew(run.id)
        if seconds is not None:  # (None: it ended elsewhere, or its lease was lost: see ``reseed``)
            run.lease_seconds = seconds
        if now - run.seen_at >= SEEN_EVERY:  # (its agent's heartbeat, a view: once a second is plenty)
            run.seen_at = now
            await self.leases.seen(run.tenant, run.agent)

    async def record(self, run: ExternalRun, event: Event) -> None:
        """Publish what runwatch itself writes on ``run`` (its lock held), and take it into the
        run's state; durable when this returns, so other instances catch up to it."""
        run.apply(await self._bus.publish(event), event)
        await self._bus.settled(run.id)

    async def history(self, run_id: str, after: int = 0) -> list[Published]:
        """The stored events of a run past ``after``, in order."""
        events: list[Published] = []
        while page := await self._store.events(run_id, events[-1].seq if events else after, PAGE):
            events += page
        return events

    async def catch_up(self, run: ExternalRun) -> None:
        """Bring this copy of ``run`` up to the store's (what other instances added to it) and to
        what its agent took; the caller holds ``run.lock``. Nothing to do where this process's copy
        is the only one."""
        if self.sharing.fresh:
            return
        for p in await self.history(run.id, run.seq):
            run.apply(p, decode(p.data))
        run.controls.ack(await self.leases.acked(run.id))
        if run.ended is not None:
            await self.end(run)

    def held(self, run: ExternalRun) -> AbstractAsyncContextManager[Any]:
        """``run`` held here (its lock) and against every other instance, its copy caught up. If
        what is done with it fails after it published (the hold lost, another instance wrote to
        the run), the copy may hold what the store refused: it is dropped, to be rebuilt. In one
        process that is its lock alone."""
        return run.lock if self.sharing.fresh else self._held(run)

    @asynccontextmanager
    async def _held(self, run: ExternalRun) -> AsyncIterator[None]:
        async with run.lock:
            run.used = time.monotonic()
            seq = run.seq
            try:
                async with self.sharing.exclusive(run.id):
                    await self.catch_up(run)
                    seq = run.seq
                    yield
            except BaseException:
                if not self.sharing.fresh and run.seq != seq:
                    self.forget(run)
                raise

    def forget(self, run: ExternalRun) -> None:
        """Drop this copy of ``run`` (the store has the run: the next request rebuilds it)."""
        if self.live.get(run.id) is run:
            del self.live[run.id]
            run.controls.wake()
            log.info("ingest.copy_dropped", run_id=run.id, seq=run.seq)

    def evict_idle(self) -> None:
        """Drop the copies nobody used for ``IDLE_COPY`` (or twice their lease), where copies can
        be stale: the instance its agent talks to keeps its own."""
        if self.sharing.fresh:
            return
        now = time.monotonic()
        for run in list(self.live.values()):
            idle = max(IDLE_COPY, 2 * run.lease_seconds)
            if now - run.used > idle and not run.controls.waiting and not run.lock.locked():
                self.forget(run)

    async def reseed(self) -> None:
        """Give every live external run without a lease one (``DEFAULT_LEASE``): where leases are
        kept apart from the store (Redis), they may have been lost."""
        for summary in await self._store.unfinished_runs():
            if summary.external:
                await self.leases.ensure(summary.id, limits.DEFAULT_LEASE)

    async def find(self, run_id: str) -> ExternalRun | None:
        """The run of ``run_id`` (this process's copy, or rebuilt from the store: adopted if live),
        or None if the store holds no external run of that id."""
        run = self.live.get(run_id)
        if run is not None:
            return run
        run = rebuild(await self.history(run_id), limits.DEFAULT_LEASE)
        if run is None or run.ended is not None:
            return run
        held = self.live.setdefault(run_id, run)  # (another request may have adopted it meanwhile)
        if held is run:
            await self.leases.ensure(run_id, run.lease_seconds)  # (kept as it runs: not renewed here)
            log.info("ingest.run_adopted", run_id=run_id, last_n=run.last_n)
        return held

    async def recover(self) -> None:
        """Adopt the external runs the store holds live (a process that stopped left them); each
        keeps the lease other instances keep for it, or gets a fresh ``DEFAULT_LEASE``."""
        for summary in await self._store.unfinished_runs():
            if summary.external and summary.id not in self.live:
                await self.find(summary.id)

    async def end(self, run: ExternalRun) -> None:
        """Once its ``run.finished`` is published (here or elsewhere), the run is not live any more."""
        if run.ended is not None and self.live.pop(run.id, None) is not None:
            await self.leases.end(run.id)
            run.controls.wake()
            log.info("ingest.run_finished", run_id=run.id, status=run.ended.value)

    def close(self) -> None:
        self.closing = True
        for run in self.live.values():
            run.controls.wake()

    # -- who may report a run ---------------------------------------------------------------------

    @staticmethod
    def may(tenant: str, registrant: str | None, principal: Principal) -> bool:
        """Only the principal that registered a run (in its tenant), or an admin, reports it."""
        if principal.role is Role.ADMIN:
            return True
        return tenant == principal.tenant and (registrant is None or registrant == principal.id)

    def check_access(self, run: ExternalRun, principal: Principal) -> None:
        if not self.may(run.tenant, run.registrant, principal):
            raise UnknownRun(f"no run {run.id!r}")

    async def reported(self, run_id: str, principal: Principal) -> ExternalRun:
        """The run ``principal`` reports (``UnknownRun`` for any other), live or ended."""
        run = await self.find(run_id)
        if run is None:
            raise UnknownRun(f"no run {run_id!r}")
        self.check_access(run, principal)
        return run

    async def for_people(self, run_id: str) -> ExternalRun:
        """The run people's input is for (the run service checked who may see it); ``UnknownRun``
        if there is none."""
        run = await self.find(run_id)
        if run is None:
            raise UnknownRun(f"no run {run_id!r}")
        return run

    @staticmethod
    def check_live(run: ExternalRun) -> None:
        """``RunAlreadyFinished`` once ``run`` ended (checked under its lock, caught up)."""
        if run.ended is not None:
            raise RunAlreadyFinished(run.id, run.ended)
