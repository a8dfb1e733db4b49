"""The external runs live on this process, and how a request finds the one it is about.

A run is *reported* by the principal that registered it (in its tenant) or by an admin; to anyone
else it answers exactly as a run that does not exist (``unknown_run``). A run not live here is
rebuilt from the store: ended, it answers as ended; unknown or not external, as unknown.
"""

from __future__ import annotations

import asyncio

import structlog

from runwatch.agents.errors import RunAlreadyFinished, UnknownRun
from runwatch.agents.events import Published
from runwatch.agents.identity import Principal, Role
from runwatch.agents.ingest import limits
from runwatch.agents.ingest.state import ExternalRun, rebuild
from runwatch.agents.store import Store

log = structlog.get_logger()


class ExternalRuns:
    __slots__ = ("_store", "changed", "closing", "live")

    def __init__(self, store: Store) -> None:
        self._store = store
        #: The external runs live here, by id.
        self.live: dict[str, ExternalRun] = {}
        #: Set when the server shuts down: long polls answer at once.
        self.closing = False
        #: Set when a run is added, its lease shortened or an approval opened: the lease keeper
        #: looks at its deadlines again.
        self.changed = asyncio.Event()

    def add(self, run: ExternalRun) -> None:
        """Keep ``run`` live here (its lease running)."""
        run.renew()
        self.live[run.id] = run
        self.changed.set()

    async def history(self, run_id: str) -> list[Published]:
        """Every stored event of a run, in order."""
        events: list[Published] = []
        while page := await self._store.events(run_id, events[-1].seq if events else 0, 1_000):
            events += page
        return events

    async def recover(self) -> None:
        """Take back the external runs the store holds live (a process that stopped left them),
        each with a fresh lease of ``DEFAULT_LEASE`` (registering again sets another)."""
        for summary in await self._store.unfinished_runs():
            if summary.external and summary.id not in self.live:
                run = rebuild(await self.history(summary.id), limits.DEFAULT_LEASE)
                if run is not None and run.ended is None:
                    self.add(run)
                    log.info("ingest.run_recovered", run_id=run.id, last_n=run.last_n)

    def end(self, run: ExternalRun) -> None:
        """Once its ``run.finished`` is published, the run is not live here any more."""
        if run.ended is not None:
            self.live.pop(run.id, None)
            run.controls.wake()
            log.info("ingest.run_finished", run_id=run.id, status=run.ended.value)

    def close(self) -> None:
        self.closing = True
        for run in self.live.values():
            run.controls.wake()

    # -- finding a run ----------------------------------------------------------------------------

    @staticmethod
    def may(tenant: str, registrant: str | None, principal: Principal) -> bool:
        """Only the principal that registered a run (in its tenant), or an admin, reports it."""
        if principal.role is Role.ADMIN:
            return True
        return tenant == principal.tenant and (registrant is None or registrant == principal.id)

    def check_access(self, run: ExternalRun, principal: Principal) -> None:
        if not self.may(run.tenant, run.registrant, principal):
            raise UnknownRun(f"no run {run.id!r}")

    async def ended(self, run_id: str, principal: Principal) -> ExternalRun:
        """A run not live here, rebuilt from the store, if it is an external run ``principal``
        reports (else ``UnknownRun``, as for a run that does not exist)."""
        run = rebuild(await self.history(run_id), limits.DEFAULT_LEASE)
        if run is None or not self.may(run.tenant, run.registrant, principal):
            raise UnknownRun(f"no run {run_id!r}")
        if run.ended is None:  # live in the store, not here: its process's runs were not taken back
            raise RunAlreadyFinished(run_id, "interrupted")
        return run

    async def reported(self, run_id: str, principal: Principal) -> ExternalRun:
        """The live run ``principal`` reports; ``RunAlreadyFinished`` once it ended, else ``UnknownRun``."""
        run = self.live.get(run_id)
        if run is None:
            raise RunAlreadyFinished(run_id, (await self.ended(run_id, principal)).status)
        self.check_access(run, principal)
        return run

    async def for_people(self, run_id: str) -> ExternalRun:
        """The live run people's input is for (the run service checked who may see it);
        ``RunAlreadyFinished`` or ``UnknownRun`` otherwise."""
        run = self.live.get(run_id)
        if run is not None:
            return run
        summary = await self._store.get_run(run_id)
        if summary is None:
            raise UnknownRun(f"no run {run_id!r}")
        raise RunAlreadyFinished(run_id, summary.status if summary.status.finished else "interrupted")
