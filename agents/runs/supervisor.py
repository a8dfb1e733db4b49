"""The supervisor: admits runs, bounds how many run at once and how many wait, cancels, shuts down.

Each run is one asyncio task from admission to its ``run.finished`` event; while queued it waits
for the runs before it in its thread to finish, then for a slot (which it lends out while it waits
for people: see ``agents/runs/inbox.py``). Cancelling is cancelling that task, so it works the same
queued, mid-stream or mid-tool, and the task itself publishes the final event: a run can never end without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import msgspec
import openai
import structlog

from runwatch.agents.bus import Bus, Fenced
from runwatch.agents.errors import (
    QueueFull,
    RunAlreadyFinished,
    ShuttingDown,
    UnknownRun,
)
from runwatch.agents.events import (
    FinalStatus,
    RunCancelRequested,
    RunFinished,
    RunQueued,
    RunResumed,
    RunStarted,
    RunStatus,
)
from runwatch.agents.identity import Actor
from runwatch.agents.loop.agent import Agent, AgentRegistry
from runwatch.agents.loop.runner import Runner
from runwatch.agents.loop.step import LimitExceeded
from runwatch.agents.redact import Redactor
from runwatch.agents.runs import threads
from runwatch.agents.runs.handle import RunHandle, new_run_id
from runwatch.agents.runs.human_input import HumanInput
from runwatch.agents.runs.resume import Resumed, rebuild
from runwatch.agents.runs.takeover import TakeOver
from runwatch.agents.store import Store
from runwatch.agents.store.aggregates import InstanceLoad

log = structlog.get_logger()


def _failure(exc: Exception, timeout: float) -> str:
    """A failed run's error, in words its user can act on (an unexpected one is logged in full)."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, LimitExceeded):
        return str(exc)
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot reach the model endpoint: {exc}; check OPENAI_BASE_URL"
    if isinstance(exc, openai.APIStatusError):
        return f"the model endpoint answered {exc.status_code}: {exc.message}"
    log.exception("run.crashed")
    return f"{type(exc).__name__}: {exc}"


class Supervisor(HumanInput, TakeOver):
    def __init__(
        self,
        *,
        bus: Bus,
        store: Store,
        registry: AgentRegistry,
        runner: Runner,
        default_model: str,
        max_running: int = 8,
        max_queued: int = 100,
        run_timeout: float = 600.0,
        offline: bool = False,
        secrets: tuple[str, ...] = (),
        instance: str = "",
        drain_seconds: float = 0.0,
        approval_timeout: float = 3600.0,
    ) -> None:
        self.instance = instance
        self._approval_timeout = approval_timeout
        self._drain_seconds = drain_seconds
        #: Called with a run's id when this process stops dealing with it without its ending here
        #: (queued for another instance, or handed over): metrics forget it.
        self.on_released: Callable[[str], None] | None = None
        self._redact = Redactor(secrets)  # error texts from outside may echo a key: scrubbed before events
        self._bus = bus
        self._store = store
        self._registry = registry
        self._runner = runner
        self._default_model = default_model
        self._slots = asyncio.Semaphore(max_running)
        self._max_running = max_running
        self._max_queued = max_queued
        self._run_timeout = run_timeout
        self._offline = offline
        self._runs: dict[str, RunHandle] = {}
        self._closing = False

    @property
    def running(self) -> int:
        return sum(1 for h in self._runs.values() if h.status is RunStatus.RUNNING)

    @property
    def queued(self) -> int:
        return sum(1 for h in self._runs.values() if h.status is RunStatus.QUEUED)

    @property
    def waiting(self) -> int:
        return sum(1 for h in self._runs.values() if h.status is RunStatus.WAITING)

    def load(self) -> InstanceLoad:
        """This instance's capacity now."""
        return InstanceLoad(
            instance=self.instance,
            slots=self._max_running,
            running=self.running,
            waiting=self.waiting,
            queued=self.queued,
            seen=round(time.time(), 3),
        )

    async def loads(self) -> list[InstanceLoad]:
        """Every instance's capacity (a cluster's: as each last announced it)."""
        return [self.load()]

    def agent(self, name: str) -> Agent:
        """The agent of that name; raises ``UnknownAgent`` listing the known ones."""
        return self._registry.get(name)

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
        """Admit a run (in ``thread``, a new one if empty; ``run_id``: its id, a new one if None);
        raises ``UnknownAgent``, ``QueueFull`` or ``ShuttingDown``."""
        if self._closing:
            raise ShuttingDown("the server is shutting down; start the run again once it is back")
        agent = self._registry.get(agent_name)
        if len(self._runs) >= self._max_running + self._max_queued:
            raise QueueFull(f"{self._max_queued} runs are already queued; wait for some to finish or raise max_queued")
        handle = self._new_handle(agent, thread, run_id)
        self._runs[handle.id] = handle
        await self._publish_queued(handle, user_input, tenant, by)
        handle.task = asyncio.create_task(self._execute(handle, user_input), name=f"run-{handle.id}")
        if self._closing:  # shutdown began while run.queued was being published: it must not escape
            handle.cancel_requested = True
            handle.cancel_reason = "the server shut down"
            self._cancel_soon(handle)
        return handle

    def _new_handle(self, agent: Agent, thread: str = "", run_id: str | None = None) -> RunHandle:
        run_id = run_id or new_run_id()
        return RunHandle(id=run_id, agent=agent.name, model=agent.model or self._default_model, thread=thread or run_id)

    async def _publish_queued(self, handle: RunHandle, user_input: str, tenant: str, by: Actor | None) -> None:
        """The run's first event, ``run.queued``: what was asked, of which agent, for whom."""
        await self._bus.publish(
            RunQueued(
                run_id=handle.id,
                agent=handle.agent,
                input=user_input,
                model=handle.model,
                tenant=tenant,
                offline=self._offline,
                by=by,
                thread=handle.thread,
            )
        )

    def _cancel_soon(self, handle: RunHandle) -> None:
        """Cancel the run's task once it has started: a task cancelled before its first step never
        runs its body, so it would publish no ``run.finished`` and give no slot back."""
        asyncio.get_running_loop().call_soon(self._cancel_now, handle)

    @staticmethod
    def _cancel_now(handle: RunHandle) -> None:
        if handle.task is not None and not handle.task.done():
            handle.task.cancel()

    def _before_turn(self, handle: RunHandle) -> None:
        """Called before a run waits for the earlier runs of its thread (it holds no slot meanwhile)."""

    def _slot(self, handle: RunHandle) -> AbstractAsyncContextManager[Any]:
        """Held while a run executes: one of ``max_running`` slots (lent out while it waits for a
        person: see ``HumanInput``)."""
        return self._holding(handle, acquire=True)

    @contextlib.asynccontextmanager
    async def _holding(self, handle: RunHandle, *, acquire: bool) -> AsyncIterator[None]:
        if acquire:
            await self._slots.acquire()
            handle.holds_slot = True
        try:
            yield
        finally:
            if handle.holds_slot:
                handle.holds_slot = False
                self._slots.release()

    async def _ended(self, handle: RunHandle) -> None:
        """Called once a run's task is over (its ``run.finished`` durable, unless handed over)."""
        return None

    async def _execute(
        self, handle: RunHandle, user_input: str, resumed: Resumed | None = None, *, resume: bool = False
    ) -> None:
        """Run ``handle`` to its ``run.finished``. ``resume``: continue it from its stored events
        (read here, inside the run's task, so a cancel while reading them ends the run as usual)."""
        agent = self._registry.get(handle.agent)
        status: FinalStatus = "failed"
        error: str | None = None
        with structlog.contextvars.bound_contextvars(run_id=handle.id, agent=handle.agent):
            try:
                status, error = await self._outcome(handle, agent, user_input, resumed, resume)
            finally:
                handle.inbox = None
                if handle.handed_over:  # no end here: another instance goes on with it
                    await self._let_go(handle)
                else:
                    await self._finish(handle, status, error)

    async def _outcome(
        self, handle: RunHandle, agent: Agent, user_input: str, resumed: Resumed | None, resume: bool
    ) -> tuple[FinalStatus, str | None]:
        """Execute the run here and say how that ended: its status and error. A succeeded run's
        answer is kept for search (its ``run.finished`` follows)."""
        timeout = agent.timeout or self._run_timeout
        try:
            answer = await self._run_here(handle, agent, user_input, resumed, resume, timeout)
            self._store.keep_answer(handle.id, answer)
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()
            return "cancelled", handle.cancel_reason
        except Fenced:  # another instance owns the run now (see ``handed_over``)
            if (task := asyncio.current_task()) is not None and task.cancelling():
                task.uncancel()
            return "cancelled", None
        except Exception as exc:
            return "failed", _failure(exc, timeout)
        return "succeeded", None

    async def _run_here(
        self, handle: RunHandle, agent: Agent, user_input: str, resumed: Resumed | None, resume: bool, timeout: float
    ) -> str:
        """Wait for the run's turn in its thread, then for a slot; holding it, run the agent to its
        answer within ``timeout`` seconds (paused while it waits for people)."""
        in_thread = bool(handle.thread) and handle.thread != handle.id
        if in_thread:  # (a run continued elsewhere too: it may have been handed over before its turn)
            self._before_turn(handle)
            await self._store.flush()  # its own row first: "before this run" is read from it
            await threads.wait_for_turn(self._store, handle.thread, handle.id)
        async with self._slot(handle):
            handle.status = RunStatus.RUNNING
            handle.started_at = started = time.monotonic()
            inbox = self._inbox(handle)
            if resume and resumed is None:
                resumed = rebuild(await self.history(handle.id))
            if resumed is not None:
                inbox.restored = dict(resumed.approvals)  # decidable as soon as it runs here
                handle.totals = resumed.totals  # (its finished steps and tool calls count)
            prior = await threads.context(self._store, self.history, handle.thread, handle.id) if in_thread else []
            await self._announce(handle, resumed, started)
            async with asyncio.timeout(timeout) as deadline:
                inbox.deadline = deadline
                return await self._runner.run(
                    handle.id, agent, user_input, handle.model, handle.totals, resumed, inbox=inbox, prior=prior
                )

    async def _announce(self, handle: RunHandle, resumed: Resumed | None, started: float) -> None:
        """The run executes here now: ``run.started``, or ``run.resumed`` for one continued here."""
        if resumed is not None:
            await self._bus.publish(
                RunResumed(run_id=handle.id, instance=self.instance, step=resumed.next_step, agent=handle.agent)
            )
            log.info("run.resumed", model=handle.model, step=resumed.next_step)
            return
        queue_wait = round(started - handle.queued_at, 4)
        await self._bus.publish(
            RunStarted(run_id=handle.id, agent=handle.agent, queue_wait=queue_wait, instance=self.instance)
        )
        log.info("run.started", model=handle.model)

    async def _finish(self, handle: RunHandle, status: FinalStatus, error: str | None) -> None:
        """Publish the run's ``run.finished`` (its error scrubbed of secrets, its totals with its
        duration here), then forget it."""
        error = self._redact(error) if error else error
        started = handle.started_at
        duration = round(time.monotonic() - started, 4) if started is not None else 0.0
        handle.status = RunStatus(status)
        totals = msgspec.structs.replace(handle.totals, duration=duration)
        await self._bus.publish(RunFinished(run_id=handle.id, status=status, error=error, totals=totals))
        # Forget the run only once its end is durable: until then ``cancel`` answers from the
        # handle, afterwards from the store, which then knows how it ended.
        try:
            await self._store.flush()
        finally:
            self._forget(handle)
            await self._ended(handle)
        log.info("run.finished", status=status, error=error, duration=duration)

    async def _let_go(self, handle: RunHandle) -> None:
        """A handed-over run: forgotten here once what it published is durable, without an end."""
        await self._store.flush()
        self._forget(handle)
        await self._ended(handle)
        log.info("run.handed_over")

    def _forget(self, handle: RunHandle) -> None:
        if self._runs.get(handle.id) is handle:  # (not taken here again meanwhile)
            del self._runs[handle.id]

    async def cancel(self, run_id: str, by: Actor | None = None) -> RunStatus:
        """Ask a run to stop; returns ``CANCELLED`` if it already was, else ``RUNNING``/``QUEUED``.

        The first request publishes ``run.cancel_requested`` (with ``by``) before the run ends.
        Idempotent: repeating it — even after the run ended cancelled — changes nothing. Raises
        ``UnknownRun``, or ``RunAlreadyFinished`` for a run that ended otherwise.
        """
        handle = self._runs.get(run_id)
        if handle is not None and handle.status.finished:
            if handle.status is RunStatus.CANCELLED:
                return RunStatus.CANCELLED
            raise RunAlreadyFinished(run_id, handle.status)
        if handle is None or handle.task is None or handle.task.done():
            summary = await self._store.get_run(run_id)
            if summary is None:
                raise UnknownRun(f"no run {run_id!r}")
            if summary.status is RunStatus.CANCELLED:
                return RunStatus.CANCELLED
            raise RunAlreadyFinished(run_id, summary.status)
        if not handle.cancel_requested:
            await self._request_cancel(handle, by)
        return handle.status

    async def _request_cancel(self, handle: RunHandle, by: Actor | None) -> None:
        """Mark ``handle`` cancelled, say who asked (``run.cancel_requested``), then stop its task."""
        handle.cancel_requested = True
        log.info("run.cancel_requested", run_id=handle.id, by=by.id if by else None)
        try:
            await self._bus.publish(RunCancelRequested(run_id=handle.id, by=by))
        finally:
            self._cancel_soon(handle)

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Refuse new runs; let running ones go on for ``drain_seconds``; then stop the rest (see
        ``_stop_rest``) and wait for their ``run.finished`` events."""
        self._closing = True
        if self._drain_seconds > 0:
            tasks = [h.task for h in self._runs.values() if h.task is not None]
            if tasks:
                log.info("supervisor.draining", runs=len(tasks), seconds=self._drain_seconds)
                await asyncio.wait(tasks, timeout=self._drain_seconds)
        tasks = [h.task for h in self._runs.values() if h.task is not None and not h.task.done()]
        self._stop_rest()
        if tasks:
            log.info("supervisor.cancelling_runs", runs=len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                log.error("supervisor.runs_did_not_stop", runs=len(pending), timeout=timeout)

    def _stop_rest(self) -> None:
        """Stop every run still going: a resumable agent's is left to this instance, restarted
        (no ``run.finished``: ``recover`` continues it, approvals it waits on still open); any
        other ends ``cancelled`` with the reason that the server shut down."""
        for handle in self._runs.values():
            if handle.task is not None and not handle.task.done():
                agent = self._registry.find(handle.agent)
                if agent is not None and agent.resumable and handle.status is not RunStatus.QUEUED:
                    handle.handed_over = True
                    handle.cancel_reason = "handed over"
                else:
                    handle.cancel_requested = True
                    handle.cancel_reason = "the server shut down"
                self._cancel_soon(handle)
