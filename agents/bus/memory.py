"""The in-process bus: one ``RecentLog`` per run plus the runs feed, in memory, bounded in bytes."""

from __future__ import annotations

import asyncio
import secrets
import time
import weakref
from collections.abc import Sequence
from typing import Any

import structlog

from runwatch.agents.bus.base import LIFECYCLE, Journal, RecentLog, Sink, Watcher
from runwatch.agents.events import LIFECYCLE_TYPES, Event, Published, RunQueued, encode

log = structlog.get_logger()


class MemoryBus:
    """Bus for a single process.

    Memory: a run's log holds at most its last ``log_capacity`` events, and all logs together at
    most ``memory_bytes`` (event JSON + a fixed overhead per event). Past the byte budget, finished
    runs' logs go first (oldest first), then the oldest half of the biggest live logs, until the
    logs hold 3/4 of the budget; readers of what left memory read the journal instead. A finished
    run's log also leaves ``retain_seconds`` after its end, or when more than ``max_retained``
    finished logs are held.

    Without a journal, events are visible as soon as they are published (tests, benchmarks).
    """

    def __init__(
        self,
        *,
        journal: Journal | None = None,
        log_capacity: int = 10_000,
        feed_capacity: int = 1_000,
        memory_bytes: int = 256 * 1024 * 1024,
        retain_seconds: float = 60.0,
        max_retained: int = 256,
    ) -> None:
        self._journal = journal
        self._log_capacity = log_capacity
        self._memory_bytes = memory_bytes
        self._retain_seconds = retain_seconds
        self._max_retained = max_retained
        self._epoch = secrets.token_hex(8)
        #: The runs feed lives in memory only: its positions are this process's.
        self.feed_epoch = secrets.token_hex(8)
        self._logs: dict[str, RecentLog] = {}
        self._feed = RecentLog(feed_capacity)
        #: Finished runs whose logs are still held, oldest first.
        self._finished: dict[str, asyncio.TimerHandle | None] = {}
        self._bytes = 0
        #: Bytes the logs have let go of so far (evictions and trims): a hint for the allocator.
        self.freed = 0
        self._watchers: dict[str, set[Watcher]] = {}
        self._sinks: list[Sink] = []
        self._failed: weakref.WeakSet[Any] = weakref.WeakSet()
        self._opening = asyncio.Lock()
        #: Producers waiting in ``settled``: run → (the head they wait for, their future).
        self._settling: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        if journal is not None:
            journal.on_durable(self._on_durable)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for waiting in self._settling.values():
            for _, future in waiting:
                if not future.done():
                    future.set_result(None)
        self._settling.clear()
        for handle in self._finished.values():
            if handle is not None:
                handle.cancel()
        self._finished.clear()

    @property
    def epoch(self) -> str:
        """The runs' logs keep their positions as long as the journal does (its epoch, once open);
        without one, as long as this process lives."""
        return self._journal.epoch if self._journal is not None else self._epoch

    @property
    def memory_used(self) -> int:
        """Bytes held by every run log and the feed (the figure ``memory_bytes`` bounds)."""
        return self._bytes

    def epoch_of(self, stream: str) -> str:
        return self.feed_epoch if stream == LIFECYCLE else self.epoch

    # -- publishing -----------------------------------------------------------------------------

    async def publish(self, event: Event) -> Published:
        run_id = event.run_id
        ring = self._logs.get(run_id)
        if ring is None:
            ring = await self._open_log(run_id, new=isinstance(event, RunQueued))
        event.seq = ring.head + 1
        event.ts = time.time()
        published = Published(run_id, event.seq, event.__struct_config__.tag, encode(event), event)
        self._grow(ring.append(published))
        if published.type == "run.finished":
            self._retire(run_id)
        journal = self._journal
        if journal is None:
            self._on_durable((published,))
        else:
            journal.append(published)
        for sink in self._sinks:
            try:
                sink.accept(published)
            except Exception as exc:
                self._report(sink, "bus.sink_failed", exc)
        for sink in self._sinks:
            try:
                await sink.ready()
            except Exception as exc:
                self._report(sink, "bus.sink_failed", exc)
        if journal is not None:
            await journal.ready()
        return published

    async def _open_log(self, run_id: str, *, new: bool) -> RecentLog:
        if new or self._journal is None:
            ring = self._logs[run_id] = RecentLog(self._log_capacity)
            return ring
        # A run this bus does not hold (a dead process's run being finished): its position comes
        # from the journal. One such open at a time, so two publishes of that run cannot both
        # read the same durable head; a log evicted meanwhile was durable, so its head is exact.
        async with self._opening:
            ring = self._logs.get(run_id)
            if ring is None:
                head = await self._journal.head(run_id)
                ring = self._logs[run_id] = RecentLog(self._log_capacity, head)
            return ring

    def _on_durable(self, batch: Sequence[Published]) -> None:
        """Make a durable batch visible: advance each run's visible head, extend the feed, wake."""
        self._show(batch)
        self._extend_feed(batch)

    def _show(self, batch: Sequence[Published]) -> None:
        """Advance the visible head of each run in ``batch`` and wake its watchers."""
        runs: dict[str, int] = {}
        for p in batch:
            ring = self._logs.get(p.run_id)
            if ring is not None and p.seq > ring.visible:
                ring.visible = p.seq
            runs[p.run_id] = p.seq
        for run_id, head in runs.items():
            self._notify(run_id, head)

    def _extend_feed(self, batch: Sequence[Published]) -> None:
        feed = self._feed
        feed_head = feed.head
        for p in batch:
            if p.type in LIFECYCLE_TYPES:
                position = feed.head + 1
                data = b'{"feed":%d,' % position + p.data[1:]
                self._grow(feed.append(Published(p.run_id, position, p.type, data, p.event)))
                feed.visible = feed.head
        if feed.head != feed_head:
            self._notify(LIFECYCLE, feed.head)

    async def settled(self, run_id: str) -> None:
        ring = self._logs.get(run_id)
        if ring is None or ring.visible >= ring.head:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        self._settling.setdefault(run_id, []).append((ring.head, future))
        await future

    def _notify(self, stream: str, head: int) -> None:
        watchers = self._watchers.get(stream)
        if watchers:
            for watcher in tuple(watchers):
                try:
                    watcher.notify(stream, head)
                except Exception as exc:
                    self._report(watcher, "bus.watcher_failed", exc)
        # Producers resume after the watchers' sends, which were scheduled first.
        if self._settling and stream in self._settling:
            waiting = [(target, f) for target, f in self._settling.pop(stream) if not f.done()]
            for target, future in waiting:
                if target <= head:
                    future.set_result(None)
            if still := [(t, f) for t, f in waiting if not f.done()]:
                self._settling[stream] = still

    def _report(self, what: Any, event: str, exc: Exception) -> None:
        """Log a failing watcher or sink once (with its traceback); the bus goes on without waiting."""
        try:
            if what in self._failed:
                return
            self._failed.add(what)
        except TypeError:  # not weak-referenceable: log every time rather than never
            pass
        log.error(event, target=type(what).__name__, error=repr(exc), exc_info=exc)

    # -- memory -----------------------------------------------------------------------------------

    def _grow(self, delta: int) -> None:
        self._bytes += delta
        if delta < 0:
            self.freed -= delta
        if self._bytes > self._memory_bytes:
            self._shed()

    def _shed(self) -> None:
        """Bring the logs down to 3/4 of the budget: finished runs first, then the biggest live logs."""
        target = self._memory_bytes * 3 // 4
        for run_id in list(self._finished):
            if self._bytes <= target:
                return
            self._evict(run_id)
        for ring in sorted([*self._logs.values(), self._feed], key=lambda r: r.size, reverse=True):
            if self._bytes <= target:
                return
            freed = ring.trim(max(1, len(ring) // 2))
            self._bytes -= freed
            self.freed += freed

    def _retire(self, run_id: str) -> None:
        earlier = self._finished.pop(run_id, None)
        if earlier is not None:
            earlier.cancel()
        self._finished[run_id] = asyncio.get_running_loop().call_later(self._retain_seconds, self._evict, run_id)
        # The oldest go; one not durable yet is put back at the end (see ``_evict``), so evict only
        # as many as are over, once each.
        for oldest in list(self._finished)[: len(self._finished) - self._max_retained]:
            self._evict(oldest)

    def _evict(self, run_id: str) -> None:
        handle = self._finished.pop(run_id, None)
        if handle is not None:
            handle.cancel()
        ring = self._logs.get(run_id)
        if ring is None:
            return
        if ring.visible < ring.head:
            # Not durable yet: keep it until it is (the journal's backpressure bounds how long).
            self._finished[run_id] = asyncio.get_running_loop().call_later(1.0, self._evict, run_id)
            return
        del self._logs[run_id]
        self._bytes -= ring.size
        self.freed += ring.size

    # -- reading --------------------------------------------------------------------------------

    def recent(self, stream: str, after: int, limit: int) -> list[Published] | None:
        ring = self._feed if stream == LIFECYCLE else self._logs.get(stream)
        if ring is None:
            return None
        return ring.read(after, limit)

    async def read(self, stream: str, after: int, limit: int) -> list[Published]:
        items = self.recent(stream, after, limit)
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

    def head(self, stream: str) -> int:
        ring = self._feed if stream == LIFECYCLE else self._logs.get(stream)
        return ring.visible if ring is not None else 0

    def first(self, stream: str) -> int:
        """The oldest position memory holds of ``stream`` (``head + 1`` when it holds none)."""
        ring = self._feed if stream == LIFECYCLE else self._logs.get(stream)
        return ring.first if ring is not None else 1

    async def position(self, run_id: str) -> int:
        if run_id == LIFECYCLE:
            return self._feed.visible
        held = self.head(run_id)
        if self._journal is None:
            return held
        return max(held, await self._journal.head(run_id))

    # -- watchers and sinks -----------------------------------------------------------------------

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
