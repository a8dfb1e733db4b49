"""The broker of a single process: every position assigned here, history in the hub and the journal.

A publish takes the run's next position from its log in the hub (``Sequencer``) and queues the
event in the journal; once the journal has made a batch durable, it becomes visible in the hub and
its lifecycle events get the next positions of the runs feed, which lives in memory only (its
epoch is this process's). Without a journal, events are visible as soon as they are published
(tests, benchmarks). ``MemoryBus`` composes it with a ``Hub`` into a ``Node``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from runwatch.agents.bus.base import LIFECYCLE, Journal
from runwatch.agents.bus.hub import Hub
from runwatch.agents.bus.node import Node
from runwatch.agents.bus.recent import RecentLog
from runwatch.agents.bus.sequencer import Sequencer
from runwatch.agents.events import LIFECYCLE_TYPES, Event, Published


class MemoryBroker:
    """See the module docstring; a ``base.Broker``."""

    __slots__ = ("_epoch", "_hub", "_journal", "_opening", "feed_epoch", "publish")

    #: ``Sequencer.publish`` itself: no call of this class's own per event.
    publish: Callable[[Event], Coroutine[Any, Any, Published]]

    def __init__(self, hub: Hub, *, journal: Journal | None = None) -> None:
        self._hub = hub
        self._journal = journal
        self._epoch = secrets.token_hex(8)
        #: The runs feed lives in memory only: its positions are this process's.
        self.feed_epoch: str = secrets.token_hex(8)
        self._opening = asyncio.Lock()
        self.publish = Sequencer(hub, journal, open_log=self._open_log, durable=self._on_durable).publish
        if journal is not None:
            journal.on_durable(self._on_durable)

    @property
    def epoch(self) -> str:
        """The runs' logs keep their positions as long as the journal does (its epoch, once open);
        without one, as long as this process lives."""
        return self._journal.epoch if self._journal is not None else self._epoch

    @property
    def problem(self) -> str | None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def watched(self, stream: str) -> None:
        return None

    def unwatched(self, stream: str) -> None:
        return None

    # -- publishing -------------------------------------------------------------------------------

    async def _open_log(self, run_id: str, new: bool) -> RecentLog:
        hub, journal = self._hub, self._journal
        if new or journal is None:
            ring = RecentLog(hub.log_capacity)
            hub.install(run_id, ring)
            return ring
        # A run this process does not hold (a dead process's run being finished): its position
        # comes from the journal. One such open at a time, so two publishes of that run cannot both
        # read the same durable head; a log evicted meanwhile was durable, so its head is exact.
        async with self._opening:
            held = hub.logs.get(run_id)
            if held is not None:
                return held
            ring = RecentLog(hub.log_capacity, await journal.head(run_id))
            hub.install(run_id, ring)
            return ring

    def _on_durable(self, batch: Sequence[Published]) -> None:
        """Make a durable batch visible: advance each run's visible head, extend the feed, wake."""
        hub = self._hub
        hub.show(batch)
        feed_head = hub.feed.head
        for p in batch:
            if p.type in LIFECYCLE_TYPES:
                position = hub.feed.head + 1
                data = b'{"feed":%d,' % position + p.data[1:]
                hub.append_feed(Published(p.run_id, position, p.type, data, p.event))
        if hub.feed.head != feed_head:
            hub.notify(LIFECYCLE, hub.feed.head)

    # -- reading ----------------------------------------------------------------------------------

    async def read(self, stream: str, after: int, limit: int) -> list[Published]:
        items = self._hub.recent(stream, after, limit)
        if items is not None:
            return items
        if stream == LIFECYCLE:
            raise LookupError("the runs feed no longer holds that position; reload the runs list")
        if self._journal is None:
            return []
        return await self._journal.events(stream, after, limit)

    async def replay(self, run_id: str, after: int, limit: int) -> list[Published]:
        # A log in memory is this process's own: visible is durable, so a short read is at the head.
        return await self.read(run_id, after, limit)

    async def position(self, run_id: str) -> int:
        if run_id == LIFECYCLE:
            return self._hub.feed.visible
        held = self._hub.head(run_id)
        if self._journal is None:
            return held
        return max(held, await self._journal.head(run_id))


def MemoryBus(
    *,
    journal: Journal | None = None,
    log_capacity: int = 10_000,
    feed_capacity: int = 1_000,
    memory_bytes: int = 256 * 1024 * 1024,
    retain_seconds: float = 60.0,
    max_retained: int = 256,
) -> Node[MemoryBroker]:
    """A single process's bus: a ``Hub`` (the memory bounds: see ``agents.bus.hub``) composed with
    a ``MemoryBroker`` journaling to ``journal``."""
    hub = Hub(
        log_capacity=log_capacity,
        feed_capacity=feed_capacity,
        memory_bytes=memory_bytes,
        retain_seconds=retain_seconds,
        max_retained=max_retained,
    )
    return Node(hub, MemoryBroker(hub, journal=journal))
