"""The runs executing on this instance: each one asyncio task from its admission here to its end.

A run's task waits for the runs before it in its thread to finish, then for a slot (which it lends
out while it waits for people: see ``agents/runs/inbox.py``), runs the agent, and publishes the
run's ``run.finished`` itself — so a run never ends without one. Cancelling a run is cancelling
that task, so it works the same queued, mid-stream or mid-tool. A run *handed over* (to be
continued elsewhere, or stopped because another instance owns it) ends here without an end.

Both supervisors (``agents/runs/supervisor.py``, ``agents/cluster/supervisor.py``) hold one: they
decide what is admitted and when; this is how an admitted run executes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, NotRequired, TypedDict

import msgspec
import openai
import structlog

from runwatch.agents.bus import Bus, Fenced
from runwatch.agents.errors import RunAlreadyFinished, UnknownRun
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
from runwatch.agents.runs.inbox import Inbox
from runwatch.agents.runs.resume import Resumed, history, rebuild
from runwatch.agents.runs.slots import Slots
from runwatch.agents.store import Store
from runwatch.agents.store.aggregates import InstanceLoad

log = structlog.get_logger()

#: Awaited once a run's task is over (its ``run.finished`` durable, unless it was handed over).
Ended = Callable[[RunHandle], Awaitable[None]]


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


class RunSettings(TypedDict):
    """What an ``Executor`` is made of: a supervisor takes these and hands them on."""

    bus: Bus
    store: Store
    registry: AgentRegistry
    runner: Runner
    #: The model of an agent that names none.
    default_model: str
    #: Runs executing at once (slots).
    max_running: NotRequired[int]
    #: Seconds a run may execute (an agent's own ``timeout`` first), not counting waits for people.
    run_timeout: NotRequired[float]
    #: Seconds an approval stays open before it expires, denied.
    approval_timeout: NotRequired[float]
    #: Whether runs go to the offline model (said in each ``run.queued``).
    offline: NotRequired[bool]
    #: Texts scrubbed from runs' errors.
    secrets: NotRequired[tuple[str, ...]]
    #: This instance's name (in ``run.started``, ``run.resumed`` and its load).
    instance: NotRequired[str]


class Executor:
    def __init__(
        self,
        *,
        bus: Bus,
        store: Store,
        registry: AgentRegistry,
        runner: Runner,
        default_model: str,
        max_running: int = 8,
        run_timeout: float = 600.0,
        approval_timeout: float = 3600.0,
        offline: bool = False,
        secrets: tuple[str, ...] = (),
        instance: str = "",
        on_ended: Ended | None = None,
    ) -> None:
        """See ``RunSettings``; ``on_ended``: awaited once each run's task is over."""
        self.instance = instance
        self.slots = Slots(max_running)
        #: The runs this instance keeps now (admitted here, or executing here), by id.
        self.runs: dict[str, RunHandle] = {}
        #: Set when shutdown begins: no run is admitted, taken or continued here any more.
        self.closing = False
        self._bus = bus
        self._store = store
        self._registry = registry
        self._runner = runner
        self._default_model = default_model
        self._run_timeout = run_timeout
        self._approval_timeout = approval_timeout
        self._offline = offline
        self._redact = Redactor(secrets)  # error texts from outside may echo a key: scrubbed before events
        self._on_ended = on_ended

    def count(self, status: RunStatus) -> int:
        return sum(1 for h in self.runs.values() if h.status is status)

    def load(self, queued: int) -> InstanceLoad:
        """This instance's capacity now, with ``queued`` runs waiting (as its supervisor counts them)."""
        return InstanceLoad(
            instance=self.instance,
            slots=self.slots.count,
            running=self.count(RunStatus.RUNNING),
            waiting=self.count(RunStatus.WAITING),
            queued=queued,
            seen=round(time.time(), 3),
        )

    def live(self) -> list[RunHandle]:
        """The runs whose task goes on here, not handed over."""
        return [h for h in self.runs.values() if h.task is not None and not h.task.done() and not h.handed_over]

    # -- admitting and launching ----------------------------------------------------------------

    def new_handle(self, agent: Agent, thread: str = "", run_id: str | None = None) -> RunHandle:
        run_id = run_id or new_run_id()
        return RunHandle(id=run_id, agent=agent.name, model=agent.model or self._default_model, thread=thread or run_id)

    async def publish_queued(self, handle: RunHandle, user_input: str, tenant: str, by: Actor | None) -> None:
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

    def launch(
        self, handle: RunHandle, user_input: str, resumed: Resumed | None = None, *, resume: bool = False
    ) -> None:
        """Keep ``handle`` and start its task. ``resumed``: where it continues; ``resume``: continue
        it from its stored events, read by its task."""
        self.runs[handle.id] = handle
        handle.task = asyncio.create_task(self._execute(handle, user_input, resumed, resume), name=f"run-{handle.id}")

    def continue_here(self, handle: RunHandle, user_input: str, resumed: Resumed) -> bool:
        """Continue a run here from ``resumed``; False (nothing started) once shutdown began."""
        if self.closing:
            return False
        self.launch(handle, user_input, resumed)
        return True

    # -- cancelling -------------------------------------------------------------------------------

    def cancel_soon(self, handle: RunHandle) -> None:
        """Cancel the run's task once it has started: a task cancelled before its first step never
        runs its body, so it would publish no ``run.finished`` and give no slot back."""
        asyncio.get_running_loop().call_soon(self._cancel_now, handle)

    @staticmethod
    def _cancel_now(handle: RunHandle) -> None:
        if handle.task is not None and not handle.task.done():
            handle.task.cancel()

    async def cancel(self, run_id: str, by: Actor | None = None) -> RunStatus:
        """Ask a run kept here to stop (see ``Supervising.cancel``); one not kept here is looked up
        in the store. Raises ``UnknownRun`` or ``RunAlreadyFinished``."""
        handle = self.runs.get(run_id)
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
            await self.request_cancel(handle, by)
        return handle.status

    async def request_cancel(self, handle: RunHandle, by: Actor | None) -> None:
        """Mark ``handle`` cancelled, say who asked (``run.cancel_requested``), then stop its task."""
        handle.cancel_requested = True
        log.info("run.cancel_requested", run_id=handle.id, by=by.id if by else None)
        try:
            await self._bus.publish(RunCancelRequested(run_id=handle.id, by=by))
        finally:
            self.cancel_soon(handle)

    def hand_over(self, handle: RunHandle) -> None:
        """Stop the run without an end, to be continued elsewhere (its approvals stay open)."""
        handle.handed_over = True
        handle.cancel_reason = "handed over"
        self.cancel_soon(handle)

    def shut(self, handle: RunHandle) -> None:
        """Stop the run: it ends ``cancelled``, because the server shut down."""
        handle.cancel_requested = True
        handle.cancel_reason = "the server shut down"
        self.cancel_soon(handle)

    def resumable(self, handle: RunHandle) -> bool:
        """Whether the run's agent can continue it from its stored events."""
        agent = self._registry.find(handle.agent)
        return agent is not None and agent.resumable

    # -- shutdown ---------------------------------------------------------------------------------

    async def drain(self, seconds: float) -> None:
        """Let the runs go on for up to ``seconds``, or until they all ended."""
        tasks = [h.task for h in self.runs.values() if h.task is not None]
        if seconds > 0 and tasks:
            log.info("supervisor.draining", runs=len(tasks), seconds=seconds)
            await asyncio.wait(tasks, timeout=seconds)

    def stop_each(self, stop: Callable[[RunHandle], None]) -> list[asyncio.Task[None]]:
        """Call ``stop`` on every run still going; returns their tasks."""
        going = [h for h in self.runs.values() if h.task is not None and not h.task.done()]
        for handle in going:
            stop(handle)
        return [h.task for h in going if h.task is not None]

    async def stop(self, stop: Callable[[RunHandle], None], timeout: float) -> None:
        """``stop_each``, then wait up to ``timeout`` for those runs' tasks to end."""
        tasks = self.stop_each(stop)
        if tasks:
            log.info("supervisor.cancelling_runs", runs=len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                log.error("supervisor.runs_did_not_stop", runs=len(pending), timeout=timeout)

    # -- a run's task -----------------------------------------------------------------------------

    async def _execute(self, handle: RunHandle, user_input: str, resumed: Resumed | None, resume: bool) -> None:
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
            if (task := asyncio.current_task()) is not None:
                task.uncancel()
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
            self.slots.unreserve(handle.id)  # (it holds none while it waits)
            await self._store.flush()  # its own row first: "before this run" is read from it
            await threads.wait_for_turn(self._store, handle.thread, handle.id)
        async with self.slots.holding(handle):
            handle.status = RunStatus.RUNNING
            handle.started_at = started = time.monotonic()
            inbox = self._inbox(handle)
            if resume and resumed is None:
                resumed = rebuild(await history(self._store, handle.id))
            if resumed is not None:
                inbox.restored = dict(resumed.approvals)  # decidable as soon as it runs here
                handle.totals = resumed.totals  # (its finished steps and tool calls count)
            prior = await self._prior(handle) if in_thread else []
            await self._announce(handle, resumed, started)
            async with asyncio.timeout(timeout) as deadline:
                inbox.deadline = deadline
                return await self._runner.run(
                    handle.id, agent, user_input, handle.model, handle.totals, resumed, inbox=inbox, prior=prior
                )

    async def _prior(self, handle: RunHandle) -> list[dict[str, Any]]:
        """The thread's earlier runs, as the model's context."""
        return await threads.context(self._store, partial(history, self._store), handle.thread, handle.id)

    def _inbox(self, handle: RunHandle) -> Inbox:
        """The run's approvals and messages, now that it executes here: while the run waits for
        people its status is ``waiting`` and its slot is lent out (see ``Inbox``)."""
        inbox = Inbox(handle.id, self._bus.publish, approval_timeout=self._approval_timeout)
        if (task := asyncio.current_task()) is not None:  # (the run's own: this runs in it)
            inbox.bind(task)

        def waiting(now: bool) -> None:
            if not handle.status.finished:
                handle.status = RunStatus.WAITING if now else RunStatus.RUNNING

        inbox.on_waiting = waiting
        inbox.lend = lambda: self.slots.lend(handle)  # nothing runs while people decide
        inbox.go_on = lambda: self.slots.take_back(handle)  # (Inbox awaits it under a lock: never twice at once)
        handle.inbox = inbox
        return inbox

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
            await self._forget(handle)
        log.info("run.finished", status=status, error=error, duration=duration)

    async def _let_go(self, handle: RunHandle) -> None:
        """A handed-over run: forgotten here once what it published is durable, without an end."""
        await self._store.flush()
        await self._forget(handle)
        log.info("run.handed_over")

    async def _forget(self, handle: RunHandle) -> None:
        if self.runs.get(handle.id) is handle:  # (not taken here again meanwhile)
            del self.runs[handle.id]
        if self._on_ended is not None:
            await self._on_ended(handle)
