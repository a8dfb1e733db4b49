"""What a supervisor promises, on one instance (``agents/runs/supervisor.py``) or many
(``agents/cluster/supervisor.py``): the run service and the composition root use it through this,
never by asking which one it is."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from runwatch.agents.events import RunStatus
from runwatch.agents.identity import Actor
from runwatch.agents.loop.agent import Agent
from runwatch.agents.runs.handle import RunHandle
from runwatch.agents.runs.inbox import Decision, Steer
from runwatch.agents.store.aggregates import InstanceLoad


class Supervising(Protocol):
    """Admits runs, executes them (here, or wherever the deployment does), bounded in how many run
    at once and how many wait; every admitted run ends with exactly one ``run.finished``, published
    by one instance, unless shutdown hands it over to be continued elsewhere."""

    #: Called with a run's id when this process stops dealing with it without its ending here
    #: (queued for another instance, or handed over): metrics forget it.
    on_released: Callable[[str], None] | None

    @property
    def running(self) -> int:
        """Runs executing here now."""
        ...

    @property
    def queued(self) -> int:
        """Runs admitted and waiting to execute (a deployment's: in its shared queue)."""
        ...

    @property
    def waiting(self) -> int:
        """Runs executing here that wait for a person now."""
        ...

    def agent(self, name: str) -> Agent:
        """The agent of that name; raises ``UnknownAgent`` listing the known ones."""
        ...

    async def loads(self) -> list[InstanceLoad]:
        """Every instance's capacity (a cluster's: as each last announced it; this one's now)."""
        ...

    async def open(self) -> None:
        """Begin: take over the runs a stopped instance left (at once, or by their leases)."""
        ...

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
        """Admit a run (in ``thread``, a new one if empty; ``run_id``: its id, a new one if None):
        its ``run.queued`` is published before this returns. Raises ``UnknownAgent``,
        ``QueueFull``, ``ShuttingDown`` or ``Unavailable``."""
        ...

    async def cancel(self, run_id: str, by: Actor | None = None) -> RunStatus:
        """Ask a run to stop, wherever it is; returns ``CANCELLED`` if it already was, else its
        status (``RUNNING``/``QUEUED``). The first request publishes ``run.cancel_requested``
        (with ``by``) before the run ends; repeating it changes nothing. Raises ``UnknownRun``,
        ``RunAlreadyFinished`` (it ended otherwise) or ``Unavailable``."""
        ...

    async def decide(self, run_id: str, approval_id: str, decision: Decision) -> Decision:
        """Decide an open approval of a live run, wherever it executes; the first decision wins."""
        ...

    async def message(self, run_id: str, steer: Steer) -> None:
        """Give a live run, wherever it executes, a person's message."""
        ...

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Refuse new runs; let running ones go on for the drain time; then stop the rest (a
        resumable agent's handed over, any other's ended ``cancelled``) and wait up to ``timeout``
        for them."""
        ...

    async def close(self) -> None:
        """Stop whatever the supervisor runs in the background (after ``shutdown``)."""
        ...
