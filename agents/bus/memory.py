"""The in-process bus: one ``RingLog`` per live run plus the lifecycle feed, all in memory."""

from __future__ import annotations

import asyncio
import time
from collections import deque

import structlog

from runwatch.agents.bus.base import LIFECYCLE, RingLog, Sink, Watcher
from runwatch.agents.events import LIFECYCLE_TYPES, Event, Published, encode

log = structlog.get_logger()


class MemoryBus:
    """Bus for a single process.

    A run's log holds its last ``log_capacity`` events; ``retain_seconds`` after ``run.finished``
    the log is dropped (readers then go to the store), sooner if more than ``max_retained``
    finished logs are held. ``seq`` numbering is only continuous for a run published through one
    bus instance, which the supervisor guarantees.
    """

    def __init__(
        self,
        *,
        log_capacity: int = 10_000,
        feed_capacity: int = 1_000,
        retain_seconds: float = 60.0,
        max_retained: int = 256,
    ) -> None:
        self._log_capacity = log_capacity
        self._retain_seconds = retain_seconds
        self._max_retained = max_retained
        self._finished: deque[tuple[str, RingLog]] = deque()
        self._logs: dict[str, RingLog] = {LIFECYCLE: RingLog(feed_capacity)}
        self._watchers: dict[str, set[Watcher]] = {}
        self._sinks: list[Sink] = []

    async def publish(self, event: Event) -> Published:
        run_id = event.run_id
        ring = self._logs.get(run_id)
        if ring is None:
            ring = self._logs[run_id] = RingLog(self._log_capacity)
        event.seq = ring.head + 1
        event.ts = time.time()
        published = Published(run_id, event.seq, event.__struct_config__.tag, encode(event), event)
        ring.append(published)
        self._notify(run_id, ring.head)
        if published.type in LIFECYCLE_TYPES:
            feed = self._logs[LIFECYCLE]
            feed.append(published)
            self._notify(LIFECYCLE, feed.head)
            if published.type == "run.finished":
                self._retire(run_id, ring)
        for sink in self._sinks:
            sink.accept(published)
        for sink in self._sinks:
            await sink.ready()
        return published

    def _notify(self, stream: str, head: int) -> None:
        watchers = self._watchers.get(stream)
        if watchers:
            for watcher in tuple(watchers):
                watcher.notify(stream, head)

    def _retire(self, run_id: str, ring: RingLog) -> None:
        self._finished.append((run_id, ring))
        while len(self._finished) > self._max_retained:
            self._evict(*self._finished.popleft())
        asyncio.get_running_loop().call_later(self._retain_seconds, self._evict, run_id, ring)

    def _evict(self, run_id: str, ring: RingLog) -> None:
        if self._logs.get(run_id) is ring:
            del self._logs[run_id]

    def read(self, stream: str, after: int, limit: int) -> list[Published] | None:
        ring = self._logs.get(stream)
        if ring is None:
            return None
        return ring.read(after, limit)

    def head(self, stream: str) -> int:
        ring = self._logs.get(stream)
        return ring.head if ring is not None else 0

    def watch(self, stream: str, watcher: Watcher) -> None:
        self._watchers.setdefault(stream, set()).add(watcher)

    def unwatch(self, stream: str, watcher: Watcher) -> None:
        watchers = self._watchers.get(stream)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[stream]

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)
