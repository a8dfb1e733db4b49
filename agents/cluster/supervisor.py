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
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog

from runwatch.agents.bus.base import Ownership
from runwatch.agents.cluster import channel
from runwatch.agents.cluster.channel import Answer, Ask, CancelRun, Queued
from runwatch.agents.cluster.leases import REDIS_ERRORS as _REDIS_ERRORS
from runwatch.agents.cluster.leases import Leases
from runwatch.agents.cluster.queue import Job, RunQueue
from runwatch.agents.cluster.remote_inbox import RemoteInbox
from runwatch.agents.errors import NotStarted, QueueFull, RunAlreadyFinished, ShuttingDown, Unavailable, UnknownApproval
from runwatch.agents.events import RunCancelRequested, RunFinished, RunStatus, Totals
from runwatch.agents.identity import Actor
from runwatch.agents.runs.handle import RunHandle
from runwatch.agents.runs.inbox import Decision, Steer
from runwatch.agents.runs.supervisor import Supervisor
from runwatch.agents.store import RunSummary
from runwatch.agents.store.aggregates import InstanceLoad

log = structlog.get_logger()

#: A live run without an owner is looked at this many times, this many seconds apart, before a
#: decision or message for it is answered ``unavailable`` (it is moving to another instance).
OWNERLESS_CHECKS = 10
OWNERLESS_CHECKS_APART = 0.1
#: Runs that ended here an instance remembers, to answer a decision or message that came late.
ENDED_MEMORY = 1_000
#: A cancel for a run not (yet) here is remembered this long, in case its job is being taken now.
CANCEL_MEMORY_SECONDS = 10.0
#: The longest a run may take to be admitted (written, then queued) before a sweep may end it.
ADMIT_SECONDS = 300.0


class ClusterSupervisor(Leases, Supervisor):
    def __init__(self, *, queue: RunQueue, ownership: Ownership, lease_seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._queue = queue
        self._redis_bus = ownership
        self._lease = lease_seconds
        self._wake = asyncio.Event()
        self._renew_now = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        #: Cancels asked for over the control channel, publishing their ``run.cancel_requested``.
        self._tasks: set[asyncio.Task[None]] = set()
        self._queued_now = 0
        self._grace_until = 0.0
        self._cancelled: dict[str, float] = {}
        self._held: set[str] = set()  # runs whose slot the taker acquired for them
        #: run id → when (monotonic) its lease was last written: taken or renewed.
        self._leased_at: dict[str, float] = {}
        #: Runs being handed over at a drain: their leases are renewed until they are queued again.
        self._handing: set[str] = set()
        ownership.on_fenced.append(self._on_fenced)
        ownership.on_connected.append(self._reconnected)
        ownership.on_connected.append(self._wake.set)  # jobs may have been queued while Redis was away
        #: How runs that ended here lately ended (the last ``ENDED_MEMORY``), to answer a late request.
        self._ended_here: dict[str, RunStatus] = {}
        self._remote = RemoteInbox(instance=self.instance, publish=queue.send, serve=self._serve)

    @property
    def queued(self) -> int:
        """Runs waiting in the shared queue (all instances), as of the last lease renewal."""
        return self._queued_now

    async def loads(self) -> list[InstanceLoad]:
        try:
            loads = {load.instance: load for load in await self._queue.instances()}
        except _REDIS_ERRORS:
            loads = {}  # Redis is away: this instance is all it can tell of
        loads[self.instance] = self.load()  # (fresher than its announcement)
        return sorted(loads.values(), key=lambda load: load.instance)

    async def open(self) -> None:
        # Owners get a whole lease to renew before anything here calls their runs dead.
        self._grace_until = time.monotonic() + self._lease
        self._loops = [
            asyncio.create_task(self._take_loop(), name="runwatch-take"),
            asyncio.create_task(self._lease_loop(), name="runwatch-leases"),
            asyncio.create_task(self._hold_loop(), name="runwatch-hold"),
        ]

    async def close(self) -> None:
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)

    def on_control(self, data: bytes) -> None:
        """A message on the deployment's control channel (agents/cluster/channel.py)."""
        match channel.decode(data):
            case Queued():
                self._wake.set()
            case CancelRun(run=run_id, by=by):
                self._cancel_here(run_id, by)
            case Ask() as ask:
                self._remote.on_ask(ask)
            case Answer() as answer:
                self._remote.on_answer(answer)

    def _cancel_here(self, run_id: str, by: Actor | None) -> None:
        """Cancel ``run_id`` if it executes here; else remember a while that it was asked to be."""
        handle = self._runs.get(run_id)
        if handle is None:
            now = time.monotonic()
            self._cancelled = {r: t for r, t in self._cancelled.items() if t > now} | {
                run_id: now + CANCEL_MEMORY_SECONDS
            }
        elif not handle.cancel_requested:
            handle.cancel_requested = True  # now: a second request must not publish again
            task = asyncio.create_task(self._request_cancel(handle, by), name=f"cancel-{run_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- people in the loop, wherever the run executes --------------------------------------------

    async def decide(self, run_id: str, approval_id: str, decision: Decision) -> Decision:
        if run_id not in self._runs and await self._elsewhere(run_id, UnknownApproval.of(run_id, approval_id)):
            await self._remote.ask(run_id, approval=approval_id, decision=decision)
            return decision
        return await super().decide(run_id, approval_id, decision)

    async def message(self, run_id: str, steer: Steer) -> None:
        if run_id not in self._runs and await self._elsewhere(run_id, NotStarted.of(run_id)):
            await self._remote.ask(run_id, steer=steer)
            return
        await super().message(run_id, steer)

    async def _elsewhere(self, run_id: str, not_yet: Exception) -> bool:
        """Whether the live run ``run_id`` executes on another instance. Raises ``not_yet`` while it
        waits in the queue, ``Unavailable`` while it moves to another instance, and ``UnknownRun``
        or ``RunAlreadyFinished`` for a run that is unknown or ended (looked at again for a moment
        when it has no owner: it may have just ended, its summary not written yet)."""
        for _ in range(OWNERLESS_CHECKS):
            await self._executing(run_id)
            summary = await self._store.get_run(run_id)
            try:
                owner = await self._queue.owner(run_id)
            except _REDIS_ERRORS as exc:
                raise Unavailable(f"the broker is unreachable ({exc}); try again in a moment") from None
            if owner is not None:
                return owner != self.instance
            if summary is not None and summary.status is RunStatus.QUEUED:
                raise not_yet
            await asyncio.sleep(OWNERLESS_CHECKS_APART)
        raise Unavailable(f"run {run_id} is moving to another instance; try again in a moment")

    def _serve(self, ask: Ask) -> bool:
        """Another instance's request for a run executing here (see ``RemoteInbox``)."""
        handle = self._runs.get(ask.run)
        if handle is None or handle.handed_over:
            ended = self._ended_here.get(ask.run)
            if ended is None:
                return False  # not ours
            raise RunAlreadyFinished(ask.run, ended)
        if handle.status.finished:
            raise RunAlreadyFinished(ask.run, handle.status)
        if ask.decision is not None:
            if handle.inbox is None:
                raise UnknownApproval.of(ask.run, ask.approval)
            handle.inbox.decide(ask.approval, ask.decision)
        elif ask.steer is not None:
            if handle.inbox is None:
                raise NotStarted.of(ask.run)
            handle.inbox.post(ask.steer)
        return True

    # -- admitting and taking -------------------------------------------------------------------

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
        if self._closing:
            raise ShuttingDown("the server is shutting down; start the run again on another instance")
        agent = self._registry.get(agent_name)
        handle = self._new_handle(agent, thread, run_id)
        try:
            if await self._queue.size() >= self._max_queued:
                raise QueueFull(f"{self._max_queued} runs are already queued; wait for some to finish")
            await self._queue.admitting(handle.id, ADMIT_SECONDS)
        except _REDIS_ERRORS as exc:
            raise Unavailable(f"the broker is unreachable ({exc}); try again in a moment") from None
        try:
            await self._publish_queued(handle, user_input, tenant, by)
            try:
                # Durable and in Redis before any instance can take it and publish its next event.
                async with asyncio.timeout(10):
                    await self._store.flush()
                    await self._redis_bus.sent()
                await self._queue.push(
                    Job(
                        run_id=handle.id,
                        agent=agent.name,
                        input=user_input,
                        model=handle.model,
                        tenant=tenant,
                        queued_at=time.time(),
                        thread=handle.thread,
                    )
                )
            except (*_REDIS_ERRORS, TimeoutError) as exc:
                # Not queued, so nobody will run it: it ends here, where its log still is.
                await self._bus.publish(
                    RunFinished(
                        run_id=handle.id, status="failed", error="could not be queued: the broker is unreachable"
                    )
                )
                await self._store.flush()
                raise Unavailable(f"the broker is unreachable ({exc}); try again in a moment") from None
        finally:
            self._redis_bus.disown(handle.id)  # whoever takes it publishes next
            self._released(handle.id)
            with contextlib.suppress(*_REDIS_ERRORS):
                await self._queue.admitted(handle.id)
        return handle

    async def _take_loop(self) -> None:
        while not self._closing:
            await self._slots.acquire()
            taken = None
            try:
                while taken is None and not self._closing:
                    self._wake.clear()
                    asked = time.monotonic()
                    try:
                        taken = await self._queue.take()
                    except _REDIS_ERRORS:
                        await asyncio.sleep(0.5)
                        continue
                    if taken is None:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), 1.0)
            finally:
                if taken is None:
                    self._slots.release()
            if taken is not None:
                self._launch(*taken, leased_at=asked)

    def _launch(self, job: Job, cancelled: bool, *, leased_at: float) -> None:
        self._redis_bus.unfence(job.run_id)
        if self._registry.find(job.agent) is None:
            self._slots.release()
            self._redis_bus.spawn(self._reject(job), f"reject-{job.run_id}")
            return
        handle = RunHandle(id=job.run_id, agent=job.agent, model=job.model, thread=job.thread or job.run_id)
        handle.queued_at = time.monotonic() - max(0.0, time.time() - job.queued_at)
        self._runs[handle.id] = handle
        self._held.add(handle.id)
        self._leased_at[handle.id] = leased_at
        handle.task = asyncio.create_task(self._execute(handle, job.input, resume=job.resume), name=f"run-{handle.id}")
        if cancelled or self._cancelled.pop(job.run_id, 0) > time.monotonic():
            handle.cancel_requested = True
            self._cancel_soon(handle)

    async def _reject(self, job: Job) -> None:
        """A job for an agent this instance does not have: the run ends, saying why."""
        error = f"instance {self.instance} has no agent {job.agent!r}; every instance needs the same RUNWATCH_AGENTS"
        log.error("run.unknown_agent", run_id=job.run_id, agent=job.agent)
        try:
            await self._bus.publish(RunFinished(run_id=job.run_id, status="failed", error=error))
            await self._store.flush()
        finally:
            self._redis_bus.disown(job.run_id)
            await self._queue.release(job.run_id)

    def _before_turn(self, handle: RunHandle) -> None:
        """The take loop acquired a slot for this run: give it back while the run waits for its turn
        (a slot held there could be the one the run before it needs to go on after an approval)."""
        if handle.id in self._held:
            self._held.discard(handle.id)
            self._slots.release()

    def _slot(self, handle: RunHandle) -> Any:
        if handle.id in self._held:  # taken with a slot the take loop acquired for it
            self._held.discard(handle.id)
            handle.holds_slot = True
            return self._holding(handle, acquire=False)
        return super()._slot(handle)

    def _released(self, run_id: str) -> None:
        if self.on_released is not None:
            self.on_released(run_id)

    async def _ended(self, handle: RunHandle) -> None:
        if not handle.handed_over:
            if len(self._ended_here) >= ENDED_MEMORY:
                del self._ended_here[next(iter(self._ended_here))]
            self._ended_here[handle.id] = handle.status
        if self._runs.get(handle.id) is None:  # (not taken here again meanwhile)
            self._leased_at.pop(handle.id, None)
        if handle.handed_over:
            self._released(handle.id)
        try:
            if handle.handed_over and handle.cancel_reason == "handed over":
                # Drained: its events in Redis first, then queued again for another instance, and
                # only then is our lease (renewed meanwhile) given up: it is never without both.
                self._handing.add(handle.id)
                try:
                    await self._redis_bus.release(handle.id)
                    summary = await self._store.get_run(handle.id)
                    await self._requeue_to_resume(handle.id, handle.agent, handle.model, summary)
                finally:
                    self._handing.discard(handle.id)
                    self._redis_bus.disown(handle.id)
            elif not handle.handed_over:
                await self._queue.release(handle.id)
            # (stopped here: another instance owns it, its lease is not ours to give up)
        except (*_REDIS_ERRORS, TimeoutError) as exc:
            log.warning("run.release_failed", run_id=handle.id, error=repr(exc))  # the lease runs out instead

    async def _requeue_to_resume(self, run_id: str, agent: str, model: str, summary: RunSummary | None) -> None:
        """Give up our lease of a run and queue it again, to be continued from its stored events."""
        await self._queue.requeue(
            Job(
                run_id=run_id,
                agent=agent,
                input=summary.input if summary is not None else "",
                model=model,
                tenant=summary.tenant if summary is not None else "default",
                resume=True,
                queued_at=time.time(),
                thread=summary.thread if summary is not None else "",
            )
        )

    # -- cancel and shutdown --------------------------------------------------------------------

    async def cancel(self, run_id: str, by: Actor | None = None) -> RunStatus:
        if run_id in self._runs:
            if self._redis_bus.holding(run_id):
                raise Unavailable(f"run {run_id} waits for this instance to reach the broker; try again in a moment")
            return await super().cancel(run_id, by)
        try:
            outcome = await self._queue.cancel(run_id)
            if outcome == "removed":  # it was queued; now leased to us: nobody else publishes to it
                self._redis_bus.unfence(run_id)
                try:
                    await self._bus.publish(RunCancelRequested(run_id=run_id, by=by))
                    await self._bus.publish(RunFinished(run_id=run_id, status="cancelled", totals=Totals()))
                    await self._store.flush()
                finally:
                    self._redis_bus.disown(run_id)
                    await self._queue.release(run_id)
                log.info("run.cancelled_in_queue", run_id=run_id)
                return RunStatus.QUEUED
            if outcome == "owned":
                await self._queue.send_cancel(run_id, by)
                return RunStatus.RUNNING
            if outcome == "admitting":
                return RunStatus.QUEUED
        except _REDIS_ERRORS as exc:
            raise Unavailable(f"the broker is unreachable ({exc}); try again in a moment") from None
        return await super().cancel(run_id, by)

    def _stop_rest(self) -> None:
        """Resumable runs are handed over (queued again, to be continued elsewhere); others cancelled;
        held ones (this instance cannot tell whether they are still its own) are stopped without an
        end, left to whichever instance claims them once Redis is back."""
        for handle in self._live():
            if self._redis_bus.holding(handle.id):
                self._stop_here(handle, "stopped while the broker was unreachable")
                continue
            agent = self._registry.find(handle.agent)
            if agent is not None and agent.resumable:
                handle.handed_over = True
                handle.cancel_reason = "handed over"
            else:
                handle.cancel_requested = True
                handle.cancel_reason = "the server shut down"
            self._cancel_soon(handle)
