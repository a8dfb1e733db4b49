"""Registering an external run: once per ``(tenant, external_id)``.

The run's id is derived from the pair with a keyed hash (HMAC-SHA-256 under a server secret every
instance sharing the database shares): 21 hex digits like every run id, unguessable, the same
wherever it is computed. A retried registration therefore finds the run it made — held here, or in
the store — and never makes two: registrations of one id are serialised here, and a run is made
only while it is held against every other instance (``Sharing.exclusive``) and the store has no
run of its id; it leaves that hold durable, so a registration elsewhere then finds it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from runwatch.agents.bus import Bus
from runwatch.agents.errors import BadRequest, UnknownThread
from runwatch.agents.events import RunQueued, RunStarted
from runwatch.agents.identity import Principal, Role
from runwatch.agents.ingest import limits
from runwatch.agents.ingest.runs import ExternalRuns
from runwatch.agents.ingest.state import ExternalRun
from runwatch.agents.ingest.wire import Registered, Registration
from runwatch.agents.store import Store

log = structlog.get_logger()


class Admission(Protocol):
    """The run service's admission of a run started elsewhere: input, rate and tenant quota."""

    async def admit(self, run_id: str, user_input: str, *, principal: Principal) -> None: ...


#: ``secret(name, make)``: a server secret shared by every instance (made once with ``make``).
Secret = Callable[[str, str], Awaitable[str]]


class Registrar:
    def __init__(
        self,
        *,
        runs: ExternalRuns,
        bus: Bus,
        store: Store,
        admission: Admission,
        secret: Secret,
        own_agent: Callable[[str], bool],
        instance: str = "",
    ) -> None:
        self._runs = runs
        self._bus = bus
        self._store = store
        self._admission = admission
        self._secret = secret
        self._own_agent = own_agent
        self._instance = instance
        self._key = b""
        #: Registrations under way, by run id: their lock, and how many hold or wait for it.
        self._registering: dict[str, tuple[asyncio.Lock, int]] = {}

    async def open(self) -> None:
        self._key = (await self._secret("ingest_run_ids", secrets.token_hex(32))).encode()

    def run_id(self, tenant: str, external_id: str) -> str:
        """The run of ``external_id`` in ``tenant``."""
        return hmac.new(self._key, f"{tenant}\x00{external_id}".encode(), hashlib.sha256).hexdigest()[:21]

    async def register(self, request: Registration, *, principal: Principal) -> tuple[Registered, bool]:
        """The run of ``request.external_id`` in the principal's tenant, made now (True) or found.

        A new run is admitted as the run service admits any (input, rate, tenant quota), then its
        ``run.queued`` and ``run.started`` are published (``external``, with ``by``) and made
        durable. A found one renews its lease (with ``lease_seconds``, if given). Raises
        ``BadRequest``, ``EmptyInput``, ``InputTooLarge``, ``UnknownThread``, ``RateLimited``;
        ``UnknownRun`` for a run another principal reports; ``Unavailable`` when the run cannot
        be held against the other instances.
        """
        run_id = self.run_id(principal.tenant, request.external_id)
        lock, waiting = self._registering.get(run_id, (asyncio.Lock(), 0))
        self._registering[run_id] = (lock, waiting + 1)
        try:
            async with lock:
                run = await self._runs.find(run_id)
                if run is None:
                    try:
                        async with self._runs.sharing.exclusive(run_id):
                            run = await self._runs.find(run_id)  # (made on another instance meanwhile?)
                            if run is None:
                                return await self._make(run_id, request, principal), True
                    except BaseException:
                        if not self._runs.sharing.fresh and (made := self._runs.live.get(run_id)) is not None:
                            self._runs.forget(made)  # (what it published may not be stored: rebuilt if it is)
                        raise
                return await self._again(run, request, principal), False
        finally:
            lock, waiting = self._registering[run_id]
            if waiting > 1:
                self._registering[run_id] = (lock, waiting - 1)
            else:
                del self._registering[run_id]

    async def _unadmit(self, run_id: str) -> None:
        """An admitted run whose ``run.queued`` was not published: its place is its tenant's again
        (failing, it frees itself within a minute)."""
        try:
            await self._store.unadmit(run_id)
        except Exception as exc:
            log.warning("run.unadmit_failed", run_id=run_id, error=repr(exc))

    async def _again(self, run: ExternalRun, request: Registration, principal: Principal) -> Registered:
        """A run registered before: its lease renewed (``lease_seconds`` its new length, if given)."""
        self._runs.check_access(run, principal)
        if run.ended is None:
            async with self._runs.held(run):
                if run.ended is None and request.lease_seconds is not None:
                    run.lease_seconds = request.lease_seconds
                    await self._runs.add(run)
                elif run.ended is None:
                    await self._runs.renew(run)
        return Registered(run_id=run.id, lease_seconds=run.lease_seconds, last_n=run.last_n, status=run.status)

    async def _make(self, run_id: str, request: Registration, principal: Principal) -> Registered:
        if self._own_agent(request.agent):
            raise BadRequest(f"{request.agent!r} is one of this server's own agents; give yours another name")
        if request.thread is not None:
            earlier = await self._store.thread_runs(request.thread, 1)
            if not earlier or not (principal.role is Role.ADMIN or earlier[0].tenant == principal.tenant):
                raise UnknownThread(f"no thread {request.thread!r}")
        await self._admission.admit(run_id, request.input, principal=principal)
        by = principal.attribution
        run = ExternalRun(
            id=run_id,
            tenant=principal.tenant,
            agent=request.agent,
            registrant=by.id if by is not None else None,
            capabilities=request.capabilities,
            lease_seconds=request.lease_seconds or limits.DEFAULT_LEASE,
        )
        queued = RunQueued(
            run_id=run_id,
            agent=request.agent,
            input=request.input,
            model=request.model,
            tenant=principal.tenant,
            by=by,
            thread=request.thread or run_id,
            external=True,
            capabilities=request.capabilities,
        )
        try:
            published = await self._bus.publish(queued)
        except BaseException:
            await self._unadmit(run_id)
            raise
        run.apply(published, queued)
        started = RunStarted(run_id=run_id, agent=request.agent, instance=self._instance, external=True)
        run.apply(await self._bus.publish(started), started)
        await self._bus.settled(run_id)
        await self._runs.add(run)
        await self._runs.leases.seen(run.tenant, run.agent)
        log.info("ingest.registered", run_id=run_id, agent=request.agent, lease=run.lease_seconds)
        return Registered(run_id=run_id, lease_seconds=run.lease_seconds, last_n=0, status=run.status)
