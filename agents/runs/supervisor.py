"""The supervisor of one instance: admits runs, bounds how many run at once and how many wait,
cancels, shuts down.

It holds its parts rather than being them: the ``Executor`` (each admitted run's task, from
admission to its ``run.finished``: ``agents/runs/executor.py``), ``HumanInput`` (people's
decisions and messages, handed to a run's inbox) and ``TakeOver`` (runs a stopped process left,
continued or ended). A run admitted here executes here; see ``agents/cluster/supervisor.py`` for
many instances.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Unpack

from runwatch.agents.errors import QueueFull, ShuttingDown
from runwatch.agents.events import RunStatus
from runwatch.agents.identity import Actor
from runwatch.agents.loop.agent import Agent
from runwatch.agents.runs.executor import Executor, RunSettings
from runwatch.agents.runs.handle import RunHandle
from runwatch.agents.runs.human_input import HumanInput
from runwatch.agents.runs.inbox import Decision, Steer
from runwatch.agents.runs.takeover import TakeOver
from runwatch.agents.store.aggregates import InstanceLoad


class Supervisor:
    """A ``Supervising`` for one instance."""

    def __init__(self, *, max_queued: int = 100, drain_seconds: float = 0.0, **running: Unpack[RunSettings]) -> None:
        """``max_queued``: runs admitted beyond the running ones before ``QueueFull``;
        ``drain_seconds``: how long shutdown lets runs go on before it stops them."""
        self.on_released: Callable[[str], None] | None = None  # (nothing leaves one instance unended)
        self._registry = running["registry"]
        self._max_queued = max_queued
        self._drain_seconds = drain_seconds
        self._executor = here = Executor(**running)
        self.instance = here.instance
        self._people = HumanInput(runs=here.runs, store=running["store"])
        self._take_over = TakeOver(
            bus=running["bus"],
            store=running["store"],
            registry=running["registry"],
            default_model=running["default_model"],
            continue_here=here.continue_here,
        )

    @property
    def running(self) -> int:
        return self._executor.count(RunStatus.RUNNING)

    @property
    def queued(self) -> int:
        return self._executor.count(RunStatus.QUEUED)

    @property
    def waiting(self) -> int:
        return self._executor.count(RunStatus.WAITING)

    def load(self) -> InstanceLoad:
        """This instance's capacity now."""
        return self._executor.load(self.queued)

    async def loads(self) -> list[InstanceLoad]:
        return [self.load()]

    def agent(self, name: str) -> Agent:
        return self._registry.get(name)

    async def open(self) -> None:
        """Take over the runs a dead process left (see ``TakeOver.recover``)."""
        await self._take_over.recover()

    async def close(self) -> None:
        return None

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
        """Admit a run to execute here (see ``Supervising.start``)."""
        here = self._executor
        if here.closing:
            raise ShuttingDown("the server is shutting down; start the run again once it is back")
        agent = self._registry.get(agent_name)
        if len(here.runs) >= here.slots.count + self._max_queued:
            raise QueueFull(f"{self._max_queued} runs are already queued; wait for some to finish or raise max_queued")
        handle = here.new_handle(agent, thread, run_id)
        here.runs[handle.id] = handle  # (counted from now on: the bound holds while it is published)
        await here.publish_queued(handle, user_input, tenant, by)
        here.launch(handle, user_input)
        if here.closing:  # shutdown began while run.queued was being published: it must not escape
            here.shut(handle)
        return handle

    async def cancel(self, run_id: str, by: Actor | None = None) -> RunStatus:
        return await self._executor.cancel(run_id, by)

    async def decide(self, run_id: str, approval_id: str, decision: Decision) -> Decision:
        return await self._people.decide(run_id, approval_id, decision)

    async def message(self, run_id: str, steer: Steer) -> None:
        await self._people.message(run_id, steer)

    async def shutdown(self, timeout: float = 10.0) -> None:
        """See ``Supervising.shutdown``: a resumable agent's run is left to this instance, stopped
        without its end (``open`` continues it at the next start, approvals it waits on still
        open); any other ends ``cancelled`` with the reason that the server shut down."""
        self._executor.closing = True
        await self._executor.drain(self._drain_seconds)
        await self._executor.stop(self._stop, timeout)

    def _stop(self, handle: RunHandle) -> None:
        if self._executor.resumable(handle) and handle.status is not RunStatus.QUEUED:
            self._executor.hand_over(handle)
        else:
            self._executor.shut(handle)
