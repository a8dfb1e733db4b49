"""Runs on many instances: a supervisor that queues runs in Redis and executes what it takes.

Any instance admits a run (``run.queued``) and queues it; any instance with a free slot takes the
next one and owns it under a lease it renews every quarter lease. Cancel reaches the owner over
the control channel. When an owner stops renewing (it died), another instance claims the lease
within ``lease_seconds`` and continues the run if its agent is resumable, or ends it ``failed``,
``interrupted``. Runs left with neither a lease nor a place in the queue (every instance died,
or Redis lost them) are claimed the same way by a periodic sweep of the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog
from redis.exceptions import RedisError

from runwatch.agents.bus.redis import RedisBus
from runwatch.agents.errors import QueueFull, ShuttingDown, Unavailable
from runwatch.agents.events import RunFinished, RunQueued, RunStatus, Totals
from runwatch.agents.run_queue import Job, RunQueue
from runwatch.agents.supervisor import RunHandle, Supervisor, new_run_id

log = structlog.get_logger()

#: How often the store is swept for runs that lost both their lease and their place in the queue.
ORPHAN_SWEEP_SECONDS = 30.0
#: A cancel for a run not (yet) here is remembered this long, in case its job is being taken now.
CANCEL_MEMORY_SECONDS = 10.0


class ClusterSupervisor(Supervisor):
    def __init__(self, *, queue: RunQueue, bus: RedisBus, lease_seconds: float, **kwargs: Any) -> None:
        super().__init__(bus=bus, **kwargs)
        self._queue = queue
        self._redis_bus = bus
        self._lease = lease_seconds
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._queued_now = 0
        self._grace_until = 0.0
        self._cancelled: dict[str, float] = {}
        self._held: set[str] = set()  # runs whose slot the taker acquired for them

    @property
    def queued(self) -> int:
        """Runs waiting in the shared queue (all instances), as of the last lease renewal."""
        return self._queued_now

    async def open(self) -> None:
        # Owners get a whole lease to renew before anything here calls their runs dead.
        self._grace_until = time.monotonic() + self._lease
        self._loops = [
            asyncio.create_task(self._take_loop(), name="runwatch-take"),
            asyncio.create_task(self._lease_loop(), name="runwatch-leases"),
        ]

    async def close(self) -> None:
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)

    def on_control(self, message: bytes) -> None:
        if message == b"queued":
            self._wake.set()
        elif message.startswith(b"cancel "):
            run_id = message[7:].decode()
            handle = self._runs.get(run_id)
            if handle is None:
                now = time.monotonic()
                self._cancelled = {r: t for r, t in self._cancelled.items() if t > now} | {
                    run_id: now + CANCEL_MEMORY_SECONDS
                }
            elif handle.task is not None and not handle.task.done() and not handle.cancel_requested:
                handle.cancel_requested = True
                handle.task.cancel()
                log.info("run.cancel_requested", run_id=run_id, by="control")

    # -- admitting and taking -------------------------------------------------------------------

    async def start(self, agent_name: str, user_input: str, *, tenant: str = "default") -> RunHandle:
        if self._closing:
            raise ShuttingDown("the server is shutting down; start the run again on another instance")
        agent = self._registry.get(agent_name)
        try:
            if await self._queue.size() >= self._max_queued:
                raise QueueFull(f"{self._max_queued} runs are already queued; wait for some to finish")
            handle = RunHandle(id=new_run_id(), agent=agent.name, model=agent.model or self._default_model)
            await self._bus.publish(
                RunQueued(
                    run_id=handle.id,
                    agent=agent.name,
                    input=user_input,
                    model=handle.model,
                    tenant=tenant,
                    offline=self._offline,
                )
            )
            # Durable and in Redis before any instance can take it and publish its next event.
            await self._redis_bus.release(handle.id)
            await self._queue.push(
                Job(
                    run_id=handle.id,
                    agent=agent.name,
                    input=user_input,
                    model=handle.model,
                    tenant=tenant,
                    queued_at=time.time(),
                )
            )
        except (RedisError, OSError) as exc:
            raise Unavailable(f"the broker is unreachable ({exc}); try again in a moment") from None
        return handle

    async def _take_loop(self) -> None:
        while not self._closing:
            await self._slots.acquire()
            job = None
            try:
                while job is None and not self._closing:
                    self._wake.clear()
                    try:
                        job = await self._queue.take()
                    except (RedisError, OSError):
                        await asyncio.sleep(0.5)
                        continue
                    if job is None:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), 1.0)
            finally:
                if job is None:
                    self._slots.release()
            if job is not None:
                self._launch(job)

    def _launch(self, job: Job) -> None:
        handle = RunHandle(id=job.run_id, agent=job.agent, model=job.model)
        handle.queued_at = time.monotonic() - max(0.0, time.time() - job.queued_at)
        self._runs[handle.id] = handle
        self._held.add(handle.id)
        handle.task = asyncio.create_task(self._execute(handle, job.input, resume=job.resume), name=f"run-{handle.id}")
        if self._cancelled.pop(job.run_id, 0) > time.monotonic():
            handle.cancel_requested = True
            handle.task.cancel()

    @contextlib.asynccontextmanager
    async def _held_slot(self, run_id: str) -> AsyncIterator[None]:
        try:
            yield
        finally:
            self._held.discard(run_id)
            self._slots.release()

    def _slot(self, handle: RunHandle | None = None) -> Any:
        if handle is not None and handle.id in self._held:
            return self._held_slot(handle.id)
        return self._slots

    async def _ended(self, handle: RunHandle) -> None:
        try:
            if handle.handed_over and handle.cancel_reason == "handed over":
                # Drained: queued again for another instance (before our lease goes: never neither).
                await self._queue.push(
                    Job(
                        run_id=handle.id,
                        agent=handle.agent,
                        input=(await self._input_of(handle.id)),
                        model=handle.model,
                        resume=True,
                    )
                )
            await self._queue.release(handle.id)
        except (RedisError, OSError) as exc:
            log.warning("run.release_failed", run_id=handle.id, error=repr(exc))  # the lease runs out instead

    async def _input_of(self, run_id: str) -> str:
        summary = await self._store.get_run(run_id)
        return summary.input if summary is not None else ""

    # -- leases ---------------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        period = max(0.1, self._lease / 4)
        next_sweep = time.monotonic() + self._lease
        while True:
            await asyncio.sleep(period)
            try:
                await self._renew()
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
            except (RedisError, OSError) as exc:
                log.warning("leases.redis_failed", error=repr(exc))
                self._grace_until = time.monotonic() + self._lease
            except Exception:
                log.exception("leases.failed")

    async def _renew(self) -> None:
        mine = [run_id for run_id, h in self._runs.items() if h.task is not None and not h.task.done()]
        for run_id in await self._queue.renew(mine):
            handle = self._runs.get(run_id)
            if handle is not None and handle.task is not None and not handle.task.done():
                # Another instance holds it now (we were cut off longer than a lease): it goes on there.
                log.error("run.lease_lost", run_id=run_id)
                handle.handed_over = True
                handle.cancel_reason = "lease lost"
                handle.task.cancel()
        self._queued_now = await self._queue.size()

    async def _recover(self, run_id: str) -> None:
        summary = await self._store.get_run(run_id)
        if summary is None or summary.status.finished:
            await self._queue.release(run_id)
            return
        log.warning("run.owner_gone", run_id=run_id, status=summary.status.value)
        if await self.take_over(summary) is not None:  # ended ``interrupted``
            await self._store.flush()
            await self._queue.release(run_id)

    async def _sweep_orphans(self) -> None:
        now = time.time()
        for run in await self._store.unfinished_runs():
            if run.id in self._runs or now - run.created_at < self._lease:
                continue
            if await self._queue.queued(run.id) or await self._queue.owner(run.id) is not None:
                continue
            if await self._queue.claim(run.id):
                await self._recover(run.id)

    # -- cancel and shutdown --------------------------------------------------------------------

    async def cancel(self, run_id: str) -> RunStatus:
        if run_id in self._runs:
            return await super().cancel(run_id)
        try:
            if await self._queue.remove(run_id):  # still queued: nobody else will ever publish to it
                await self._bus.publish(RunFinished(run_id=run_id, status="cancelled", totals=Totals()))
                await self._store.flush()
                log.info("run.cancelled_in_queue", run_id=run_id)
                return RunStatus.QUEUED
            if await self._queue.owner(run_id) is not None:
                await self._queue.send_cancel(run_id)
                return RunStatus.RUNNING
        except (RedisError, OSError) as exc:
            raise Unavailable(f"the broker is unreachable ({exc}); try again in a moment") from None
        return await super().cancel(run_id)

    def _stop_rest(self) -> None:
        """Resumable runs are handed over (queued again, to be continued elsewhere); others cancelled."""
        for handle in self._runs.values():
            if handle.task is None or handle.task.done():
                continue
            agent = self._registry.get(handle.agent)
            if agent.resumable:
                handle.handed_over = True
                handle.cancel_reason = "handed over"
            else:
                handle.cancel_requested = True
                handle.cancel_reason = "the server shut down"
            handle.task.cancel()
