"""Runs on many instances: a supervisor that queues runs in Redis and executes what it takes.

Any instance admits a run (``run.queued``) and queues it; any instance with a free slot takes the
next one and owns it under a lease it renews every quarter of ``lease_seconds``. Cancel reaches the
owner over the control channel. When an owner stops renewing (it died), another instance claims
the lease within ``lease_seconds``: a resumable agent's run is queued again to be continued from
its stored events; any other ends ``failed``, ``interrupted``. Runs left with neither a lease nor a
place in the queue (every instance died, or Redis lost them) are claimed by a sweep of the store.

An owner that cannot renew its leases holds its runs (they publish nothing) before another
instance may claim them, and lets them go on once it renews; one whose lease another instance
claimed meanwhile, or one a position of which the store refuses (another instance wrote it), is
stopped here at once (``fence``): one run is never published by two instances.

Its parts: the ``Executor`` (the runs executing here), ``HumanInput`` (people's input for them)
with the ``RemoteInbox`` (for runs another instance executes), ``TakeOver`` (a dead owner's run
ended), the ``LeaseKeeper`` (agents/cluster/leases.py) and the ``Taker`` (agents/cluster/taker.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Unpack

import structlog

from runwatch.agents.bus.base import Ownership
from runwatch.agents.cluster.channel import Answer, Ask, CancelRun, ControlMessage, Queued
from runwatch.agents.cluster.leases import LeaseKeeper
from runwatch.agents.cluster.queue import REDIS_ERRORS, Job, RunQueue
from runwatch.agents.cluster.remote_inbox import RemoteInbox
from runwatch.agents.cluster.taker import Taker
from runwatch.agents.errors import NotStarted, QueueFull, RunAlreadyFinished, ShuttingDown, Unavailable, UnknownApproval
from runwatch.agents.events import RunCancelRequested, RunFinished, RunStatus, Totals
from runwatch.agents.identity import Actor
from runwatch.agents.loop.agent import Agent
from runwatch.agents.runs.executor import Executor, RunSettings
from runwatch.agents.runs.handle import RunHandle
from runwatch.agents.runs.human_input import HumanInput
from runwatch.agents.runs.inbox import Decision, Steer
from runwatch.agents.runs.takeover import TakeOver
from runwatch.agents.store.aggregates import InstanceLoad

log = structlog.get_logger()

#: A live run without an owner is looked at this many times, this many seconds apart, before a
#: decision or message for it is answered ``unavailable`` (it is moving to another instance).
OWNERLESS_CHECKS = 10
OWNERLESS_CHECKS_APART = 0.1
#: Runs that ended here an instance remembers, to answer a decision or message that came late.
ENDED_MEMORY = 1_000
#: The longest a run may take to be admitted (written, then queued) before a sweep may end it.
ADMIT_SECONDS = 300.0


def _unreachable(exc: BaseException) -> Unavailable:
    return Unavailable(f"the broker is unreachable ({exc}); try again in a moment")


class ClusterSupervisor:
    """A ``Supervising`` for an instance of a deployment that shares its runs through Redis."""

    def __init__(
        self,
        *,
        queue: RunQueue,
        ownership: Ownership,
        lease_seconds: float,
        max_queued: int = 100,
        drain_seconds: float = 0.0,
        **running: Unpack[RunSettings],
    ) -> None:
        """``ownership``: the bus's side of which runs this instance publishes (see ``Ownership``);
        ``max_queued``: runs the shared queue holds before ``QueueFull``; ``drain_seconds``: how
        long shutdown lets runs go on before it stops them."""
        self.on_released: Callable[[str], None] | None = None
        self._queue = queue
        self._ownership = ownership
        self._bus = bus = running["bus"]
        self._store = store = running["store"]
        self._registry = registry = running["registry"]
        self._max_queued = max_queued
        self._drain_seconds = drain_seconds
        self._executor = here = Executor(**running, on_ended=self._ended)
        self.instance = here.instance
        self._people = HumanInput(runs=here.runs, store=store)
        self._remote = RemoteInbox(instance=here.instance, publish=queue.send, serve=self._serve)
        take_over = TakeOver(
            bus=bus,
            store=store,
            registry=registry,
            default_model=running["default_model"],
            continue_here=here.continue_here,
        )
        self._leases = LeaseKeeper(
            queue=queue,
            ownership=ownership,
            executor=here,
            store=store,
            registry=registry,
            take_over=take_over,
            load=self.load,
            lease_seconds=lease_seconds,
        )
        self._taker = Taker(
            queue=queue,
            ownership=ownership,
            executor=here,
            bus=bus,
            store=store,
            registry=registry,
            leased=self._leases.leased,
        )
        ownership.on_fenced.append(self._leases.on_fenced)
        ownership.on_connected.append(self._leases.reconnected)
        ownership.on_connected.append(self._taker.wake)  # jobs may have been queued while Redis was away
        #: How runs that ended here lately ended (the last ``ENDED_MEMORY``), to answer a late request.
        self._ended_here: dict[str, RunStatus] = {}
        #: Cancels asked for over the control channel, publishing their ``run.cancel_requested``.
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> int:
        return self._executor.count(RunStatus.RUNNING)

    @property
    def queued(self) -> int:
        """Runs waiting in the shared queue (all instances), as of the last lease renewal."""
        return self._leases.queued

    @property
    def waiting(self) -> int:
        return self._executor.count(RunStatus.WAITING)

    def load(self) -> InstanceLoad:
        """This instance's capacity now."""
        return self._executor.load(self.queued)

    async def loads(self) -> list[InstanceLoad]:
        try:
            loads = {load.instance: load for load in await self._queue.instances()}
        except REDIS_ERRORS:
            loads = {}  # Redis is away: this instance is all it can tell of
        loads[self.instance] = self.load()  # (fresher than its announcement)
        return sorted(loads.values(), key=lambda load: load.instance)

    def agent(self, name: str) -> Agent:
        return self._registry.get(name)

    async def open(self) -> None:
        """Take queued runs, keep leases; dead instances' runs are taken over by their leases."""
        self._taker.open()
        self._leases.open()

    async def close(self) -> None:
        await self._taker.close()
        await self._leases.close()

    def on_message(self, message: ControlMessage) -> None:
        """A message on the deployment's control channel (agents/cluster/channel.py) for runs."""
        match message:
            case Queued():
                self._taker.wake()
            case CancelRun(run=run_id, by=by):
                self._cancel_here(run_id, by)
            case Ask() as ask:
                self._remote.on_ask(ask)
            case Answer() as answer:
                self._remote.on_answer(answer)

    def _cancel_here(self, run_id: str, by: Actor | None) -> None:
        """Cancel ``run_id`` if it executes here; else remember a while that it was asked to be."""
        handle = self._executor.runs.get(run_id)
        if handle is None:
            self._taker.cancelled(run_id)
        elif not handle.cancel_requested:
            handle.cancel_requested = True  # now: a second request must not publish again
            task = asyncio.create_task(self._executor.request_cancel(handle, by), name=f"cancel-{run_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- people in the loop, wherever the run executes --------------------------------------------

    async def decide(self, run_id: str, approval_id: str, decision: Decision) -> Decision:
        if run_id not in self._executor.runs and await self._elsewhere(run_id, UnknownApproval.of(run_id, approval_id)):
            await self._remote.ask(run_id, approval=approval_id, decision=decision)
            return decision
        return await self._people.decide(run_id, approval_id, decision)

    async def message(self, run_id: str, steer: Steer) -> None:
        if run_id not in self._executor.runs and await self._elsewhere(run_id, NotStarted.of(run_id)):
            await self._remote.ask(run_id, steer=steer)
            return
        await self._people.message(run_id, steer)

    async def _elsewhere(self, run_id: str, not_yet: Exception) -> bool:
        """Whether the live run ``run_id`` executes on another instance. Raises ``not_yet`` while it
        waits in the queue, ``Unavailable`` while it moves to another instance, and ``UnknownRun``
        or ``RunAlreadyFinished`` for a run that is unknown or ended (looked at again for a moment
        when it has no owner: it may have just ended, its summary not written yet)."""
        for _ in range(OWNERLESS_CHECKS):
            await self._people.executing(run_id)
            summary = await self._store.get_run(run_id)
            try:
                owner = await self._queue.owner(run_id)
            except REDIS_ERRORS as exc:
                raise _unreachable(exc) from None
            if owner is not None:
                return owner != self.instance
            if summary is not None and summary.status is RunStatus.QUEUED:
                raise not_yet
            await asyncio.sleep(OWNERLESS_CHECKS_APART)
        raise Unavailable(f"run {run_id} is moving to another instance; try again in a moment")

    def _serve(self, ask: Ask) -> bool:
        """Another instance's request for a run executing here (see ``RemoteInbox``)."""
        handle = self._executor.runs.get(ask.run)
        if handle is None or handle.handed_over:
            ended = self._ended_here.get(ask.run)
            if ended is None:
                return False  # not ours
            raise RunAlreadyFinished(ask.run, ended)
        if handle.status.finished:
            raise RunAlreadyFinished(ask.run, handle.status)
        if ask.decision is not None:
            self._people.decide_in(ask.run, handle, ask.approval, ask.decision)
        elif ask.steer is not None:
            self._people.post_to(ask.run, handle, ask.steer)
        return True

    # -- admitting ------------------------------------------------------------------------------

    async def start(
        self,
        agent_name: str,
        user_input: str,
        *,
        tenant: str = "default",
        by: Actor | None = None,
        thread: str = "",
        run_id: str | None = None,
    ) -> RunHandle:
        """Admit a run and queue it for whichever instance takes it (see ``Supervising.start``)."""
        if self._executor.closing:
            raise ShuttingDown("the server is shutting down; start the run again on another instance")
        agent = self._registry.get(agent_name)
        handle = self._executor.new_handle(agent, thread, run_id)
        try:
            if await self._queue.size() >= self._max_queued:
                raise QueueFull(f"{self._max_queued} runs are already queued; wait for some to finish")
            await self._queue.admitting(handle.id, ADMIT_SECONDS)
        except REDIS_ERRORS as exc:
            raise _unreachable(exc) from None
        try:
            await self._executor.publish_queued(handle, user_input, tenant, by)
            await self._enqueue(handle, user_input, tenant)
        finally:
            self._ownership.disown(handle.id)  # whoever takes it publishes next
            self._released(handle.id)
            with contextlib.suppress(*REDIS_ERRORS):
                await self._queue.admitted(handle.id)
        return handle

    async def _enqueue(self, handle: RunHandle, user_input: str, tenant: str) -> None:
        """Queue the admitted run, once its ``run.queued`` is durable and in Redis (before any
        instance can take it and publish its next event). Not queued, nobody would run it: it
        ends here, where its log still is, and this raises ``Unavailable``."""
        try:
            async with asyncio.timeout(10):
                await self._store.flush()
                await self._ownership.sent()
            await self._queue.push(
                Job(
                    run_id=handle.id,
                    agent=handle.agent,
                    input=user_input,
                    model=handle.model,
                    tenant=tenant,
                    queued_at=time.time(),
                    thread=handle.thread,
                )
            )
        except (*REDIS_ERRORS, TimeoutError) as exc:
            await self._bus.publish(
                RunFinished(run_id=handle.id, status="failed", error="could not be queued: the broker is unreachable")
            )
            await self._store.flush()
            raise _unreachable(exc) from None

    def _released(self, run_id: str) -> None:
        if self.on_released is not None:
            self.on_released(run_id)

    async def _ended(self, handle: RunHandle) -> None:
        """A run's task here is over: remember how it ended, give up (or hand over) its lease."""
        if not handle.handed_over:
            if len(self._ended_here) >= ENDED_MEMORY:
                del self._ended_here[next(iter(self._ended_here))]
            self._ended_here[handle.id] = handle.status
        else:
            self._released(handle.id)
        await self._leases.let_go(handle)

    # -- cancel and shutdown --------------------------------------------------------------------

    async def cancel(self, run_id: str, by: Actor | None = None) -> RunStatus:
        """Cancel a run, wherever it is (see ``Supervising.cancel``)."""
        if run_id in self._executor.runs:
            if self._ownership.holding(run_id):
                raise Unavailable(f"run {run_id} waits for this instance to reach the broker; try again in a moment")
            return await self._executor.cancel(run_id, by)
        try:
            outcome = await self._queue.cancel(run_id)
            if outcome == "removed":  # it was queued; now leased to us: nobody else publishes to it
                await self._cancel_queued(run_id, by)
                return RunStatus.QUEUED
            if outcome == "owned":
                await self._queue.send_cancel(run_id, by)
                return RunStatus.RUNNING
            if outcome == "admitting":
                return RunStatus.QUEUED
        except REDIS_ERRORS as exc:
            raise _unreachable(exc) from None
        return await self._executor.cancel(run_id, by)

    async def _cancel_queued(self, run_id: str, by: Actor | None) -> None:
        """End a run taken out of the queue to be cancelled: ``run.cancel_requested``, then ``cancelled``."""
        self._ownership.unfence(run_id)
        try:
            await self._bus.publish(RunCancelRequested(run_id=run_id, by=by))
            await self._bus.publish(RunFinished(run_id=run_id, status="cancelled", totals=Totals()))
            await self._store.flush()
        finally:
            self._ownership.disown(run_id)
            await self._queue.release(run_id)
        log.info("run.cancelled_in_queue", run_id=run_id)

    async def shutdown(self, timeout: float = 10.0) -> None:
        """See ``Supervising.shutdown``: a resumable agent's run is handed over (queued again, to
        be continued elsewhere); any other is cancelled; a held one (this instance cannot tell
        whether it is still its own) is stopped without an end, left to whichever instance claims
        it once Redis is back."""
        self._executor.closing = True
        await self._executor.drain(self._drain_seconds)
        await self._executor.stop(self._stop, timeout)

    def _stop(self, handle: RunHandle) -> None:
        if handle.handed_over:
            return
        if self._ownership.holding(handle.id):
            self._leases.stop_here(handle, "stopped while the broker was unreachable")
        elif self._executor.resumable(handle):
            self._executor.hand_over(handle)
        else:
            self._executor.shut(handle)
