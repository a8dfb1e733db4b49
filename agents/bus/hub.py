"""The hub: what one process holds of the streams it serves, and who is woken when they grow.

It holds one ``RecentLog`` per run plus the runs feed, the watchers of each stream, the sinks, and
the producers waiting in ``settled``. It assigns no position and reads nothing from elsewhere: its
broker (``base.Broker``) appends to its logs and says when events become visible (durable); the hub
then makes them readable and wakes their watchers — as centrifuge's hub fans out what its broker
delivers, the two held side by side by a node (``node.Node``).

Memory: a run's log holds at most its last ``log_capacity`` events, and all logs together at most
``memory_bytes`` (event JSON + a fixed overhead per event). Past the byte budget, finished runs'
logs go first (oldest first), then the oldest half of the biggest live logs, until the logs hold
3/4 of the budget; readers of what left memory read the broker's history instead. A finished
run's log also leaves ``retain_seconds`` after its end, or when more than ``max_retained``
finished logs are held. Only visible events ever leave: what is not durable yet stays.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable, Sequence

import structlog

from runwatch.agents.bus.base import LIFECYCLE, Sink, Watcher
from runwatch.agents.bus.recent import RecentLog
from runwatch.agents.events import Published

log = structlog.get_logger()


class Hub:
    """See the module docstring.

    For its broker: ``logs`` (run → its log) and ``sinks`` are read freely and never rebound;
    they change only through ``install``, ``drop``, ``append``, ``extend`` and ``add_sink``, which
    keep the byte count. ``on_evicted`` callbacks get a run's id when its log left memory.
    """

    __slots__ = (
        "_bytes",
        "_failed",
        "_finished",
        "_max_retained",
        "_memory_bytes",
        "_retain_seconds",
        "_settling",
        "_watchers",
        "feed",
        "feed_capacity",
        "freed",
        "log_capacity",
        "logs",
        "on_evicted",
        "sinks",
    )

    def __init__(
        self,
        *,
        log_capacity: int = 10_000,
        feed_capacity: int = 1_000,
        memory_bytes: int = 256 * 1024 * 1024,
        retain_seconds: float = 60.0,
        max_retained: int = 256,
    ) -> None:
        self.log_capacity = log_capacity
        self.feed_capacity = feed_capacity
        self._memory_bytes = memory_bytes
        self._retain_seconds = retain_seconds
        self._max_retained = max_retained
        self.logs: dict[str, RecentLog] = {}
        self.feed = RecentLog(feed_capacity)
        #: Finished runs whose logs are still held, oldest first.
        self._finished: dict[str, asyncio.TimerHandle | None] = {}
        self._bytes = 0
        #: Bytes the logs have let go of so far (evictions and trims): a hint for the allocator.
        self.freed = 0
        self._watchers: dict[str, set[Watcher]] = {}
        self.sinks: list[Sink] = []
        self._failed: weakref.WeakSet[object] = weakref.WeakSet()
        #: Producers waiting in ``settled``: run → (the head they wait for, their future).
        self._settling: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self.on_evicted: list[Callable[[str], None]] = []

    def close(self) -> None:
        """Release every producer waiting in ``settled`` and stop the retention timers."""
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
    def memory_used(self) -> int:
        """Bytes held by every run log and the feed (the figure ``memory_bytes`` bounds)."""
        return self._bytes

    # -- reading ----------------------------------------------------------------------------------

    def recent(self, stream: str, after: int, limit: int) -> list[Published] | None:
        ring = self.feed if stream == LIFECYCLE else self.logs.get(stream)
        if ring is None:
            return None
        return ring.read(after, limit)

    def head(self, stream: str) -> int:
        ring = self.feed if stream == LIFECYCLE else self.logs.get(stream)
        return ring.visible if ring is not None else 0

    def first(self, stream: str) -> int:
        ring = self.feed if stream == LIFECYCLE else self.logs.get(stream)
        return ring.first if ring is not None else 1

    # -- watchers, sinks and producers ------------------------------------------------------------

    def watch(self, stream: str, watcher: Watcher) -> None:
        self._watchers.setdefault(stream, set()).add(watcher)

    def unwatch(self, stream: str, watcher: Watcher) -> None:
        watchers = self._watchers.get(stream)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[stream]

    def watched(self, stream: str) -> bool:
        """Someone here watches ``stream``."""
        return stream in self._watchers

    def watched_streams(self) -> list[str]:
        return list(self._watchers)

    def add_sink(self, sink: Sink) -> None:
        self.sinks.append(sink)

    async def settled(self, run_id: str) -> None:
        ring = self.logs.get(run_id)
        if ring is None or ring.visible >= ring.head:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        self._settling.setdefault(run_id, []).append((ring.head, future))
        await future

    async def settled_all(self, run_ids: Iterable[str]) -> None:
        """``settled`` for each of ``run_ids``, the event loop let run other work once in all."""
        loop = asyncio.get_running_loop()
        waits = []
        for run_id in run_ids:
            ring = self.logs.get(run_id)
            if ring is not None and ring.visible < ring.head:
                future = loop.create_future()
                self._settling.setdefault(run_id, []).append((ring.head, future))
                waits.append(future)
        if not waits:
            await asyncio.sleep(0)
        for future in waits:
            await future

    def release_settled(self, run_id: str) -> None:
        """Let the producers of ``run_id`` waiting in ``settled`` go on (its events will not come)."""
        for _, future in self._settling.pop(run_id, []):
            if not future.done():
                future.set_result(None)

    def notify(self, stream: str, head: int) -> None:
        """Wake the watchers of ``stream`` with its new ``head``, then the producers it settles."""
        watchers = self._watchers.get(stream)
        if watchers:
            for watcher in tuple(watchers):
                try:
                    watcher.notify(stream, head)
                except Exception as exc:
                    self.report(watcher, "bus.watcher_failed", exc)
        # Producers resume after the watchers' sends, which were scheduled first.
        if self._settling and stream in self._settling:
            waiting = [(target, f) for target, f in self._settling.pop(stream) if not f.done()]
            for target, future in waiting:
                if target <= head:
                    future.set_result(None)
            if still := [(t, f) for t, f in waiting if not f.done()]:
                self._settling[stream] = still

    def report(self, what: object, event: str, exc: Exception) -> None:
        """Log a failing watcher or sink once (with its traceback); the bus goes on without waiting."""
        try:
            if what in self._failed:
                return
            self._failed.add(what)
        except TypeError:  # not weak-referenceable: log every time rather than never
            pass
        log.error(event, target=type(what).__name__, error=repr(exc), exc_info=exc)

    # -- the broker's side: logs ------------------------------------------------------------------

    def install(self, run_id: str, ring: RecentLog) -> None:
        """Hold ``ring`` as the log of ``run_id`` (a new run's, or one loaded from history)."""
        self.logs[run_id] = ring
        self._grow(ring.size)

    def drop(self, run_id: str) -> None:
        """Let go of the log of ``run_id`` now, visible or not (it is not this process's to show)."""
        ring = self.logs.pop(run_id, None)
        handle = self._finished.pop(run_id, None)
        if handle is not None:
            handle.cancel()
        if ring is not None:
            self._bytes -= ring.size
            self.freed += ring.size

    def append(self, ring: RecentLog, published: Published) -> None:
        """Append a just-published event at ``ring.head + 1``, not visible yet (see ``show``)."""
        # The publish path: ``_grow`` inlined.
        delta = ring.append(published)
        self._bytes += delta
        if delta < 0:
            self.freed -= delta
        if self._bytes > self._memory_bytes:
            self._shed()
        if published.type == "run.finished":
            self._retire(published.run_id)

    def show(self, batch: Sequence[Published]) -> None:
        """A durable batch: advance the visible head of each of its runs and wake their watchers."""
        runs: dict[str, int] = {}
        logs = self.logs
        for p in batch:
            ring = logs.get(p.run_id)
            if ring is not None and p.seq > ring.visible:
                ring.visible = p.seq
            runs[p.run_id] = p.seq
        for run_id, head in runs.items():
            self.notify(run_id, head)

    def extend(self, run_id: str, items: Sequence[Published]) -> None:
        """Append events durable elsewhere (another instance's, history) to the run's log, visible at
        once; only those at the next position are taken. Wakes the run's watchers."""
        ring = self.logs[run_id]
        for p in items:
            if p.seq == ring.head + 1:
                self._grow(ring.append(p))
                ring.visible = ring.head
                if p.type == "run.finished":
                    self._retire(run_id)
        self.notify(run_id, ring.visible)

    # -- the broker's side: the runs feed ---------------------------------------------------------

    def append_feed(self, published: Published) -> None:
        """Append a visible entry at the feed's next position (``feed.head + 1``); the broker wakes
        the feed's watchers (``notify(LIFECYCLE, ...)``) once its batch is in."""
        feed = self.feed
        self._grow(feed.append(published))
        feed.visible = feed.head

    def reset_feed(self, head: int) -> None:
        """Start the feed again, empty, at ``head`` (its positions were lost); wake its watchers."""
        self._bytes -= self.feed.size
        self.feed = RecentLog(self.feed_capacity, head)
        self.notify(LIFECYCLE, head)

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
        for ring in sorted([*self.logs.values(), self.feed], key=lambda r: r.size, reverse=True):
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
        ring = self.logs.get(run_id)
        if ring is not None:
            if ring.visible < ring.head:
                # Not durable yet: keep it until it is (the journal's backpressure bounds how long).
                self._finished[run_id] = asyncio.get_running_loop().call_later(1.0, self._evict, run_id)
                return
            del self.logs[run_id]
            self._bytes -= ring.size
            self.freed += ring.size
        for callback in self.on_evicted:
            callback(run_id)
