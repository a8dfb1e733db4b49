"""The ingest service: the one door of the ingest API, as ``RunService`` is of runwatch's own runs.

It holds its parts: ``ExternalRuns`` (the runs live here, and who reports each), the
``Registrar`` (one run per ``(tenant, external_id)``), ``PeopleInput`` (cancels, decisions and
messages: the run service's ``Reported`` part) and the ``LeaseKeeper``. Posting events and reading
controls are here.

Guarantees of a post:

* **Exactly once, in order.** A run's posts, controls and lease end are applied one at a time
  (``ExternalRun.lock``). Events with ``n`` ≤ the last accepted are skipped (a retried batch); a
  batch that does not continue there is refused (``Gap``, with the ``n`` expected), and so is any
  batch with one bad event — whole, nothing applied. The answer comes once what it accepted is
  durable (``Bus.settled``); after a crash ``last_n`` is rebuilt from the stored events (see
  ``state``), so a client retrying its batch stores each event exactly once.
* **Controls at least once**, each with a stable ``c`` (``controls``): every answer carries those
  the agent has not said it took (``after``).

Any instance: what instances share (``shared``: one process shares nothing; a cluster's forms
live in Redis) keeps the same rules across them. Each post, person's input and lease end holds the
run against every other instance (``Sharing.exclusive``) and first catches its copy up from the
store, where every other instance's events are durable before it lets go; leases live where every
instance sees them (``Leases``); and a change other instances' long polls wait for is told to them
(``Sharing.changed``), which catch their copy up and answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec
import structlog

from runwatch.agents.bus import Bus
from runwatch.agents.errors import Gap, InvalidEvent, RateLimited, RunAlreadyFinished, RunwatchError
from runwatch.agents.events import ApprovalRequested, Event, RunFinished, RunStatus, Token
from runwatch.agents.identity import Actor, Principal
from runwatch.agents.ingest import batch as batches
from runwatch.agents.ingest import limits
from runwatch.agents.ingest.leases import LeaseKeeper
from runwatch.agents.ingest.people import PeopleInput
from runwatch.agents.ingest.registration import Admission, Registrar, Secret
from runwatch.agents.ingest.runs import ExternalRuns
from runwatch.agents.ingest.shared import Alone, Leases, MemoryLeases, Sharing
from runwatch.agents.ingest.state import ExternalRun
from runwatch.agents.ingest.wire import (
    EVENT_OF,
    INCOMING,
    Accepted,
    Batch,
    ControlsPage,
    Refused,
    Registered,
    Registration,
    RunResult,
)
from runwatch.agents.runs.inbox import Decision, Steer, new_approval_id
from runwatch.agents.store import Store

log = structlog.get_logger()


#: What an agent's ``token`` event is decoded as (``_event`` builds its ``Token`` field by field).
_INCOMING_TOKEN = INCOMING["token"]
assert _INCOMING_TOKEN.__struct_fields__ == ("n", "text", "deltas"), "IngestService._event: a token's fields changed"


def refusal(exc: RunwatchError) -> Refused:
    """What the per-run route would have answered for ``exc``, as one run's part's error."""
    return Refused(
        status_code=exc.http_status,
        code=exc.code,
        detail=exc.message,
        expected_n=exc.expected_n if isinstance(exc, Gap) else None,
        retry_after=exc.retry_after if isinstance(exc, RateLimited) else 1.0 if exc.http_status == 503 else None,
    )


class IngestService:
    def __init__(
        self,
        *,
        bus: Bus,
        store: Store,
        admission: Admission,
        secret: Secret,
        own_agent: Callable[[str], bool],
        sharing: Sharing | None = None,
        leases: Leases | None = None,
        approval_timeout: float = 3600.0,
        instance: str = "",
    ) -> None:
        """``admission``: the run service's (input, rate, tenant quota); ``secret``: the server
        secrets' store; ``own_agent(name)``: whether ``name`` is one of this server's agents (an
        external one may not take it); ``sharing`` and ``leases``: what the instances share (by
        default, one process's: ``Alone``, ``MemoryLeases``); ``approval_timeout``: seconds an
        approval stays open."""
        self._bus = bus
        self._store = store
        self._approval_timeout = approval_timeout
        self._sharing = sharing = sharing or Alone()
        self.runs = ExternalRuns(store, bus, sharing, leases or MemoryLeases())
        self._registrar = Registrar(
            runs=self.runs,
            bus=bus,
            store=store,
            admission=admission,
            secret=secret,
            own_agent=own_agent,
            instance=instance,
        )
        self._people = PeopleInput(self.runs)
        self._leases = LeaseKeeper(runs=self.runs, approval_timeout=approval_timeout)
        self._polls: dict[str, int] = {}
        #: Copies being caught up (``on_changed``): one task per run at most, and whether it was
        #: told again meanwhile.
        self._tasks: set[asyncio.Task[None]] = set()
        self._catching_up: dict[str, bool] = {}

    async def open(self) -> None:
        """Take back the external runs left live by a process that stopped (each with a fresh
        lease), and start keeping leases."""
        await self._registrar.open()
        await self.runs.recover()
        self._leases.start()

    @property
    def long_polls(self) -> int:
        """Long polls for controls waiting here now."""
        return sum(self._polls.values())

    async def last_seen(self, tenant: str | None) -> dict[str, float]:
        """When each agent of ``tenant`` (None: every tenant) last posted or polled, epoch seconds
        (those heard from since the deployment's leases were last lost: a view, best effort)."""
        return await self.runs.leases.last_seen(tenant)

    async def close(self) -> None:
        """Answer every long poll now and take no new wait; stop keeping leases. The runs stay
        live: their agents go on posting once a server is back."""
        self.runs.close()
        self._leases.stop()
        for task in self._tasks:
            task.cancel()

    async def register(self, request: Registration, *, principal: Principal) -> tuple[Registered, bool]:
        """See ``Registrar.register``."""
        return await self._registrar.register(request, principal=principal)

    # -- posting events ---------------------------------------------------------------------------

    async def post(self, run_id: str, body: bytes, *, principal: Principal) -> Accepted:
        """Apply a batch (see the module's guarantees); an empty one is a heartbeat. Raises
        ``UnknownRun``, ``RunAlreadyFinished``, what ``batch.decode`` raises, ``Gap``,
        ``InvalidEvent``."""
        return await self.apply(run_id, batches.decode(body), principal=principal)

    async def post_many(self, body: bytes, *, principal: Principal) -> list[RunResult]:
        """Apply each run's part of ``body`` as ``post`` applies one run's batch, independently;
        one result per run, in order, answered once every part's accepted events are durable.
        Raises what ``batch.decode_many`` raises for the request as a whole."""
        parts = batches.decode_many(body)
        if not self._sharing.fresh:  # (each part held against the other instances until durable)
            return list(await asyncio.gather(*(self._part(run_id, batch, principal) for run_id, batch in parts)))
        results = [await self._part(run_id, batch, principal, settle=False) for run_id, batch in parts]
        await self._bus.settled_all(r.run_id for r in results if r.accepted is not None and r.accepted.accepted)
        return results

    async def _part(
        self, run_id: str, batch: Batch | RunwatchError, principal: Principal, *, settle: bool = True
    ) -> RunResult:
        try:
            if isinstance(batch, RunwatchError):
                raise batch
            accepted = await self.apply(run_id, batch, principal=principal, settle=settle)
            return RunResult(run_id=run_id, accepted=accepted)
        except RunwatchError as exc:
            return RunResult(run_id=run_id, error=refusal(exc))

    async def apply(self, run_id: str, batch: Batch, *, principal: Principal, settle: bool = True) -> Accepted:
        """Apply a decoded batch to the run ``principal`` reports (see ``post``); ``settle``: return
        once its accepted events are durable (else the caller waits for them). Where copies can be
        stale, they are durable before the run is let go, whatever ``settle`` says."""
        run = await self.runs.reported(run_id, principal)
        if run.ended is not None:
            raise RunAlreadyFinished(run_id, run.ended)
        await self.runs.renew(run)  # (first: Redis alone; the store may be away a while)
        async with self.runs.held(run):
            self.runs.check_live(run)
            fresh = [item for item in batch.events if item.n > run.last_n]
            if fresh and fresh[0].n != run.last_n + 1:
                expected = run.last_n + 1
                raise Gap(f"run {run_id} accepted n up to {run.last_n}: send n={expected} next", expected_n=expected)
            events = [self._event(run, item) for item in fresh]
            self._check_approvals(run, events)
            for event in events:
                if isinstance(event, RunFinished):
                    if event.totals is None:  # (now: the batch's earlier events are in them)
                        event = msgspec.structs.replace(event, totals=run.final_totals())
                    if event.status == "succeeded":
                        self._store.keep_answer(run_id, run.answer_text)
                run.apply(await self._bus.publish(event), event)
                if isinstance(event, ApprovalRequested):
                    self.runs.leases.changed.set()  # (its expiry may be the keeper's next deadline)
            if events and not self._sharing.fresh:
                await self._bus.settled(run_id)
            if batch.after is not None:
                run.controls.ack(batch.after)
                await self.runs.leases.ack(run_id, batch.after)
            after = run.controls.acked
            answer = Accepted(
                run_id=run_id,
                accepted=len(fresh),
                skipped=len(batch.events) - len(fresh),
                last_n=run.last_n,
                controls=run.controls.after(after),
                cursor=run.controls.cursor(after),
                status=run.status,
            )
        if events and settle and self._sharing.fresh:
            await self._bus.settled(run_id)
        if run.ended is not None:
            await self.runs.end(run)
            await self._sharing.changed(run_id)
        return answer

    def _event(self, run: ExternalRun, item: Any) -> Event:
        """The event an agent's ``item`` becomes on the run."""
        if type(item) is _INCOMING_TOKEN:  # (most of what agents send: built directly)
            return Token(run_id=run.id, text=item.text, deltas=item.deltas)
        tag = item.__struct_config__.tag
        fields = {name: getattr(item, name) for name in item.__struct_fields__ if name != "n"}
        if tag == "approval.requested":
            fields["approval_id"] = fields["approval_id"] or new_approval_id()
            fields["expires_at"] = round(time.time() + self._approval_timeout, 3)
        return EVENT_OF[tag](run_id=run.id, **fields)

    @staticmethod
    def _check_approvals(run: ExternalRun, events: list[Event]) -> None:
        """Each approval's id is new to the run, and the run holds no more than it may open."""
        opened = [e for e in events if type(e) is ApprovalRequested]
        if not opened:
            return
        ids = [e.approval_id for e in opened]
        for event in opened:
            if run.approvals.known(event.approval_id) or ids.count(event.approval_id) > 1:
                raise InvalidEvent(f"approval.requested: approval_id {event.approval_id!r} is used already")
        if len(run.approvals.open) + len(opened) > limits.MAX_OPEN_APPROVALS:
            raise InvalidEvent(f"a run may hold {limits.MAX_OPEN_APPROVALS} open approvals at most; wait for decisions")

    # -- controls ---------------------------------------------------------------------------------

    async def controls(self, run_id: str, after: int, wait: float, *, principal: Principal) -> ControlsPage:
        """The run's controls past ``after`` (every control up to it counts as taken), waiting up
        to ``wait`` seconds (at most ``MAX_WAIT``) while there is none. A poll renews the lease
        too. Raises ``UnknownRun``; ``RateLimited`` past ``MAX_POLLS_PER_PRINCIPAL``."""
        run = await self.runs.reported(run_id, principal)
        if run.ended is None:
            await self.runs.renew(run)
            await self.runs.leases.ack(run_id, after)
            await self._caught_up(run)
        if run.ended is not None:
            return ControlsPage(run_id=run_id, controls=[], cursor=after, status=run.ended)
        run.controls.ack(after)
        wait = 0.0 if self.runs.closing else min(max(wait, 0.0), limits.MAX_WAIT)
        if wait > 0 and not run.controls.after(after):
            await self._poll(run, after, wait, principal)
            await self._caught_up(run)  # (a change told to this instance may have been lost)
        return ControlsPage(
            run_id=run_id, controls=run.controls.after(after), cursor=run.controls.cursor(after), status=run.status
        )

    async def _poll(self, run: ExternalRun, after: int, wait: float, principal: Principal) -> None:
        held = self._polls.get(principal.id, 0)
        if held >= limits.MAX_POLLS_PER_PRINCIPAL:
            raise RateLimited(
                f"{principal.id} holds {held} long polls, the most one principal may; poll with wait=0 or later",
                retry_after=1.0,
                kind="long_polls",
            )
        self._polls[principal.id] = held + 1
        try:
            await run.controls.wait(
                wait, lambda: bool(run.controls.after(after)) or run.ended is not None or self.runs.closing
            )
        finally:
            left = self._polls[principal.id] - 1
            if left:
                self._polls[principal.id] = left
            else:
                del self._polls[principal.id]

    def on_changed(self, run_id: str) -> None:
        """Another instance changed ``run_id`` (``Sharing.changed``): this copy of it, if any, is
        caught up (once at a time per run; again if told again meanwhile), and the long polls
        waiting on it look again; a copy of a run that ended is dropped."""
        run = self.runs.live.get(run_id)
        if run is None:
            return
        if run_id in self._catching_up:
            self._catching_up[run_id] = True
            return
        self._catching_up[run_id] = False
        task = asyncio.create_task(self._catch_up(run), name=f"ingest-catch-up-{run_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _catch_up(self, run: ExternalRun) -> None:
        try:
            while True:
                self._catching_up[run.id] = False
                await self._caught_up(run)
                run.controls.wake()
                if not self._catching_up[run.id]:
                    return
        finally:
            del self._catching_up[run.id]

    async def _caught_up(self, run: ExternalRun) -> None:
        """Catch this copy up, where copies can be stale; a store away leaves it as it is (the
        answer then says what this instance knows)."""
        if self._sharing.fresh:
            return
        try:
            async with run.lock:
                await self.runs.catch_up(run)
        except Exception as exc:
            log.warning("ingest.catch_up_failed", run_id=run.id, error=repr(exc))

    # -- people's input (the run service's ``Reported``) -----------------------------------------

    async def cancel(self, run_id: str, by: Actor | None) -> RunStatus:
        return await self._people.cancel(run_id, by)

    async def decide(self, run_id: str, approval_id: str, decision: Decision) -> Decision:
        return await self._people.decide(run_id, approval_id, decision)

    async def message(self, run_id: str, steer: Steer) -> None:
        await self._people.message(run_id, steer)
