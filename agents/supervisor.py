"""The supervisor: admits runs, bounds how many run at once and how many wait, cancels, shuts down.

Each run is one asyncio task from admission to its ``run.finished`` event; while queued it waits
for a slot. Cancelling is cancelling that task, so it works the same queued, mid-stream or
mid-tool, and the task itself publishes the final event: a run can never end without one.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field

import openai
import structlog

from runwatch.agents.agent import Agent, AgentRegistry
from runwatch.agents.bus import Bus
from runwatch.agents.errors import QueueFull, RunAlreadyFinished, ShuttingDown, UnknownRun
from runwatch.agents.events import RunFinished, RunQueued, RunStarted, RunStatus, Totals
from runwatch.agents.redact import Redactor
from runwatch.agents.runner import LimitExceeded, Runner, RunStats
from runwatch.agents.store import Store

log = structlog.get_logger()


def new_run_id() -> str:
    """Time-ordered and unguessable: 11 hex digits of milliseconds, then 10 random ones."""
    return f"{int(time.time() * 1000):011x}{secrets.token_hex(5)}"


@dataclass
class RunHandle:
    id: str
    agent: str
    model: str
    task: asyncio.Task[None] | None = None
    status: RunStatus = RunStatus.QUEUED
    cancel_requested: bool = False
    #: Why the run was cancelled when it was not a user's request (shown as the run's error).
    cancel_reason: str | None = None
    queued_at: float = field(default_factory=time.monotonic)
    stats: RunStats = field(default_factory=RunStats)


class Supervisor:
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
    ) -> None:
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

    def agent(self, name: str) -> Agent:
        """The agent of that name; raises ``UnknownAgent`` listing the known ones."""
        return self._registry.get(name)

    async def start(self, agent_name: str, user_input: str, *, tenant: str = "default") -> RunHandle:
        """Admit a run; raises ``UnknownAgent``, ``QueueFull`` or ``ShuttingDown``."""
        if self._closing:
            raise ShuttingDown("the server is shutting down; start the run again once it is back")
        agent = self._registry.get(agent_name)
        if len(self._runs) >= self._max_running + self._max_queued:
            raise QueueFull(f"{self._max_queued} runs are already queued; wait for some to finish or raise max_queued")
        handle = RunHandle(id=new_run_id(), agent=agent.name, model=agent.model or self._default_model)
        self._runs[handle.id] = handle
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
        handle.task = asyncio.create_task(self._execute(handle, user_input), name=f"run-{handle.id}")
        if self._closing:  # shutdown began while run.queued was being published: it must not escape
            handle.cancel_requested = True
            handle.cancel_reason = "the server shut down"
            handle.task.cancel()
        return handle

    async def _execute(self, handle: RunHandle, user_input: str) -> None:
        agent = self._registry.get(handle.agent)
        timeout = agent.timeout or self._run_timeout
        started: float | None = None
        status: str = "failed"
        error: str | None = None
        with structlog.contextvars.bound_contextvars(run_id=handle.id, agent=handle.agent):
            try:
                async with self._slots:
                    handle.status = RunStatus.RUNNING
                    started = time.monotonic()
                    await self._bus.publish(
                        RunStarted(
                            run_id=handle.id, agent=handle.agent, queue_wait=round(started - handle.queued_at, 4)
                        )
                    )
                    log.info("run.started", model=handle.model)
                    async with asyncio.timeout(timeout):
                        await self._runner.run(handle.id, agent, user_input, handle.model, handle.stats)
                status = "succeeded"
            except asyncio.CancelledError:
                status, error = "cancelled", handle.cancel_reason
                asyncio.current_task().uncancel()
            except TimeoutError:
                error = f"timed out after {timeout:g} s"
            except LimitExceeded as exc:
                error = str(exc)
            except openai.APIConnectionError as exc:
                error = f"cannot reach the model endpoint: {exc}; check OPENAI_BASE_URL"
            except openai.APIStatusError as exc:
                error = f"the model endpoint answered {exc.status_code}: {exc.message}"
            except Exception as exc:
                log.exception("run.crashed")
                error = f"{type(exc).__name__}: {exc}"
            finally:
                error = self._redact(error) if error else error
                stats = handle.stats
                duration = round(time.monotonic() - started, 4) if started is not None else 0.0
                handle.status = RunStatus(status)
                await self._bus.publish(
                    RunFinished(
                        run_id=handle.id,
                        status=status,
                        error=error,
                        totals=Totals(
                            input_tokens=stats.input_tokens,
                            output_tokens=stats.output_tokens,
                            tool_calls=stats.tool_calls,
                            steps=stats.steps,
                            duration=duration,
                        ),
                    )
                )
                # Forget the run only once its end is durable: until then ``cancel`` answers from the
                # handle, afterwards from the store, which then knows how it ended.
                try:
                    await self._store.flush()
                finally:
                    self._runs.pop(handle.id, None)
                log.info("run.finished", status=status, error=error, duration=duration)

    async def cancel(self, run_id: str) -> RunStatus:
        """Ask a run to stop; returns ``CANCELLED`` if it already was, else ``RUNNING``/``QUEUED``.

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
            handle.cancel_requested = True
            handle.task.cancel()
            log.info("run.cancel_requested", run_id=run_id)
        return handle.status

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Refuse new runs, cancel the live ones and wait for their ``run.finished`` events."""
        self._closing = True
        tasks = [h.task for h in self._runs.values() if h.task is not None]
        for handle in self._runs.values():
            handle.cancel_requested = True
            handle.cancel_reason = "the server shut down"
        for task in tasks:
            task.cancel()
        if tasks:
            log.info("supervisor.cancelling_runs", runs=len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                log.error("supervisor.runs_did_not_stop", runs=len(pending), timeout=timeout)
