"""The run service: the one door between the transports (REST, WebSocket, SSE) and the runtime.

Start, cancel, get, list, read events and check where a subscription may start — each transport
calls these and turns a ``RunwatchError`` into its own kind of answer. Identity, tenants and
cross-instance routing plug in here, once.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from runwatch.agents.bus import LIFECYCLE
from runwatch.agents.bus.memory import MemoryBus
from runwatch.agents.errors import AfterBeyondHead, EmptyInput, InputTooLarge, ResyncReason, UnknownRun
from runwatch.agents.events import Published, RunStatus
from runwatch.agents.store import RunPage, RunSummary, Store
from runwatch.agents.supervisor import RunHandle, Supervisor

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a subscription starts. With ``resync`` set, the client's position is no good here: it
    must drop what it holds of the stream and subscribe again from ``after`` in ``epoch``."""

    after: int
    epoch: str
    resync: ResyncReason | None = None


class RunService:
    def __init__(
        self, *, bus: MemoryBus, store: Store, supervisor: Supervisor, max_input_bytes: int = 256 * 1024
    ) -> None:
        self.bus = bus
        self.store = store
        self.supervisor = supervisor
        self.max_input_bytes = max_input_bytes

    # -- commands ---------------------------------------------------------------------------------

    async def start(self, agent: str, user_input: str, *, tenant: str = "default") -> RunHandle:
        """Admit a run. Returns once its ``run.queued`` is durable, so it can be read at once.

        Raises ``EmptyInput``, ``InputTooLarge``, ``UnknownAgent``, ``QueueFull``, ``ShuttingDown``.
        """
        self.supervisor.agent(agent)  # an unknown agent is the first thing to say
        if not user_input.strip():
            raise EmptyInput("input is empty: say what the agent should do")
        size = len(user_input.encode())
        if size > self.max_input_bytes:
            raise InputTooLarge(
                f"input is {size} bytes; the limit is {self.max_input_bytes} bytes (RUNWATCH_MAX_INPUT_BYTES)"
            )
        handle = await self.supervisor.start(agent, user_input, tenant=tenant)
        await self.store.flush()
        return handle

    async def cancel(self, run_id: str) -> RunStatus:
        """``RUNNING``/``QUEUED`` (cancelling now) or ``CANCELLED`` (it already was): see ``Supervisor.cancel``."""
        return await self.supervisor.cancel(run_id)

    async def recover(self) -> list[Published]:
        """Take over the runs a dead process left queued or running (one process, no Redis): a
        resumable agent's run continues here; the others end ``failed``, error ``interrupted``.

        Their events take the next positions after everything that process made durable, which is
        everything any watcher was shown.
        """
        finished = []
        for run in await self.store.unfinished_runs():
            if (published := await self.supervisor.take_over(run)) is not None:
                finished.append(published)
        await self.store.flush()
        return finished

    # -- reads ------------------------------------------------------------------------------------

    async def get(self, run_id: str) -> RunSummary:
        summary = await self.store.get_run(run_id)
        if summary is None:
            raise UnknownRun(f"no run {run_id!r}")
        return summary

    async def list(
        self,
        *,
        status: str | None = None,
        agent: str | None = None,
        tenant: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """A page of runs, newest first, with the runs-feed position it is valid at.

        The position is read before the store: anything that becomes visible later is after it.
        """
        feed = self.bus.head(LIFECYCLE)
        page = await self.store.list_runs(status=status, agent=agent, tenant=tenant, limit=limit, cursor=cursor)
        page.feed = feed
        page.feed_epoch = self.bus.feed_epoch
        return page

    async def exists(self, run_id: str) -> bool:
        return self.bus.head(run_id) > 0 or await self.store.get_run(run_id) is not None

    async def events(self, run_id: str, after: int, limit: int) -> list[Published]:
        """Up to ``limit`` events of a run after ``after``, gap-free; ``UnknownRun`` if there is none.

        The runs feed is not a run: it is followed over the WebSocket only (``subscribe "*"``).
        """
        if run_id == LIFECYCLE:
            raise UnknownRun('"*" is the runs feed: follow it over the WebSocket; list runs with GET /api/runs')
        items = await self.bus.read(run_id, after, limit)
        if not items and not await self.exists(run_id):
            raise UnknownRun(f"no run {run_id!r}")
        return items

    async def resume_run(self, run_id: str, after: int) -> int:
        """Where a replay of a run (SSE) starts: ``after``, checked. Raises ``UnknownRun``, ``AfterBeyondHead``."""
        if run_id == LIFECYCLE:
            raise UnknownRun('"*" is the runs feed: follow it over the WebSocket; list runs with GET /api/runs')
        return (await self.resume(run_id, after)).after

    async def resume(self, stream: str, after: int, epoch: str | None = None) -> Resume:
        """Check where a subscription to a run (or the runs feed ``"*"``) may start.

        Raises ``UnknownRun`` or ``AfterBeyondHead``; returns a ``Resume`` with ``resync`` when the
        client's ``epoch`` is not the log's, or the feed no longer holds its position.
        """
        if stream == LIFECYCLE:
            return self._resume_feed(after, epoch)
        if epoch is not None and epoch != self.bus.epoch:
            if not await self.exists(stream):
                raise UnknownRun(f"no run {stream!r}")
            return Resume(0, self.bus.epoch, ResyncReason.EPOCH_CHANGED)
        head = self.bus.head(stream)
        if after > head or head == 0:
            head = await self.bus.position(stream)
            if head == 0:
                raise UnknownRun(f"no run {stream!r}")
            if after > head:
                raise AfterBeyondHead(f"run {stream} has {head} events; subscribe with after between 0 and {head}")
        return Resume(after, self.bus.epoch)

    def _resume_feed(self, after: int, epoch: str | None) -> Resume:
        head = self.bus.head(LIFECYCLE)
        current = self.bus.feed_epoch
        if epoch is not None and epoch != current:
            return Resume(head, current, ResyncReason.EPOCH_CHANGED)
        if after > head:
            raise AfterBeyondHead(f"the runs feed is at {head}; subscribe with after between 0 and {head}")
        if after + 1 < self.bus.first(LIFECYCLE):
            return Resume(head, current, ResyncReason.FEED_TRIMMED)
        return Resume(after, current)
