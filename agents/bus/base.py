"""The bus contract: publish per run, read any run's log from a position, be woken on news.

Positions. Every event of a run has a ``seq`` (1, 2, 3 … with no gap), assigned by the bus and
nowhere else. A run's log also has an **epoch**: a string that stays the same for as long as the
log's positions mean the same events, and changes when a log is lost or rebuilt. A client resuming
with ``(epoch, seq)`` therefore either gets exactly the events after ``seq`` or learns that it must
resync; it never gets different events at a position it already saw.

Durability. With a ``Journal`` (the store), an event becomes *visible* — readable, counted in
``head``, announced to watchers — only once the journal has made it durable. Whatever a watcher
received survives a crash of the process, so a position handed out is never handed out again.

The bus holds *policy-free* storage of recent events; the readers (WebSocket connections, SSE
streams) keep their own cursors and decide what to do when they fall behind. That way a publish
costs one encode plus one wake-up per watcher, and a watcher costs one cursor, not a queue copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from runwatch.agents.events import Event, Published


class Fenced(RuntimeError):
    """This process may no longer publish to the run: another instance owns it now (its lease ran
    out here, or the store refused a position this process wrote)."""


class Watermark:
    """A count that only grows, and the futures waiting for it to reach their targets (what a
    writer has written, what a sender has sent): ``advance`` it, ``await reached(target)``."""

    __slots__ = ("_waiters", "value")

    def __init__(self) -> None:
        self.value = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def advance(self, count: int) -> None:
        self.value += count
        if self._waiters:
            waiting = []
            for target, future in self._waiters:
                if target <= self.value:
                    if not future.done():
                        future.set_result(None)
                else:
                    waiting.append((target, future))
            self._waiters = waiting

    async def reached(self, target: int) -> None:
        if self.value >= target:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        await future


#: The stream name of the runs feed: every run's ``run.*`` events, in the order they became visible.
LIFECYCLE = "*"


class Watcher(Protocol):
    """Something to wake when a stream grows. ``notify`` should not block; if it raises, the bus logs
    it once and goes on (a failing watcher never breaks a publish or another watcher)."""

    def notify(self, stream: str, head: int) -> None: ...


class Sink(Protocol):
    """A consumer that must see every event (metrics), in publish order.

    ``ready`` is awaited after each publish and is where a sink applies backpressure to producers.
    A sink that raises is logged and skipped; the publish goes on.
    """

    def accept(self, published: Published) -> None: ...

    async def ready(self) -> None: ...


Durable = Callable[[Sequence[Published]], None]


class Journal(Protocol):
    """Where the bus makes events durable (the store): appends in publish order, batched.

    ``on_durable`` callbacks run on the event loop with each committed batch, in commit order.
    """

    epoch: str

    def append(self, published: Published) -> None:
        """Queue an event for writing; never blocks, never drops."""
        ...

    async def ready(self) -> None:
        """Backpressure: wait while the pending bound (events or bytes) is exceeded."""
        ...

    def on_durable(self, callback: Durable) -> None: ...

    def on_conflict(self, callback: Callable[[str], None]) -> None:
        """``callback(run_id)`` when another writer already holds positions this process wrote for
        the run (several instances on one database): those events are not made durable."""
        ...

    async def head(self, run_id: str) -> int:
        """The last durable seq of ``run_id`` (0 if none)."""
        ...

    async def events(self, run_id: str, after: int, limit: int) -> list[Published]:
        """Durable events of ``run_id`` with seq > ``after``, at most ``limit``, in order."""
        ...


class Bus(Protocol):
    """Atomic per run: one publish assigns one position, and history and live fan-out agree on it."""

    epoch: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, event: Event) -> Published:
        """Assign the run's next ``seq`` and ``ts``, encode once, make it durable and visible, fan out.

        Returns the ``Published`` event: its ``seq`` is its position in the run's log (``epoch``).
        A run's first event is ``run.queued`` (seq 1); any other event of a run this bus does not
        hold continues from the journal's last position.
        """
        ...

    async def settled(self, run_id: str) -> None:
        """Return once every event of ``run_id`` published so far is visible (durable, announced to
        its watchers), and never before the event loop has run other work once.

        A producer that publishes faster than events become visible (a model streaming at full
        speed) awaits this between bursts, so it runs at most one burst ahead of its watchers.
        """
        ...

    async def read(self, stream: str, after: int, limit: int) -> list[Published]:
        """Visible events of ``stream`` after position ``after``, at most ``limit``, in order, gap-free:
        a run's from memory while it holds them, else from the journal. The runs feed lives in memory
        only: for a position it no longer holds this raises ``LookupError`` (the reader must resync)."""
        ...

    async def replay(self, run_id: str, after: int, limit: int) -> list[Published]:
        """``read`` for a reader that pages through a run (REST): fewer than ``limit`` only once they
        reach the run's durable head, even where this bus's copy of the run is behind it."""
        ...

    def recent(self, stream: str, after: int, limit: int) -> list[Published] | None:
        """The non-blocking read of the hot path: what memory holds after ``after``.

        ``None`` means memory no longer holds position ``after + 1`` (evicted or never here): use
        ``read``. An empty list means the reader is caught up.
        """
        ...

    def head(self, stream: str) -> int:
        """The last visible position of ``stream`` held in memory (0 if none is held)."""
        ...

    async def position(self, run_id: str) -> int:
        """The last visible position of a run, from memory or the journal (0: no such run)."""
        ...

    def watch(self, stream: str, watcher: Watcher) -> None: ...

    def unwatch(self, stream: str, watcher: Watcher) -> None: ...

    def add_sink(self, sink: Sink) -> None: ...


class RecentLog:
    """Consecutive positions held in memory, oldest dropped first; bounded by count and by bytes.

    Positions start at 1. ``head`` is the last appended position, ``visible`` the last one readers
    may see (appended and durable). ``read`` and ``trim`` are slices of one list: O(k) in the items
    they touch. ``size`` estimates the bytes held: an event's JSON twice (the encoded bytes, and the
    event object's own copy of its text and fields, which is as big) plus a fixed overhead.
    """

    __slots__ = ("_capacity", "_items", "first", "head", "size", "visible")

    #: Bytes an item costs beyond its data: the ``Published`` object, its list slot, the Struct.
    OVERHEAD = 200

    @classmethod
    def cost(cls, item: Published) -> int:
        return 2 * len(item.data) + cls.OVERHEAD

    def __init__(self, capacity: int, head: int = 0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._items: list[Published] = []
        self.first = head + 1
        self.head = head
        self.visible = head
        self.size = 0

    def __len__(self) -> int:
        return len(self._items)

    def append(self, item: Published) -> int:
        """Append ``item`` at ``head + 1``; returns the bytes the log grew by (negative if it shrank)."""
        self.head += 1
        self._items.append(item)
        grown = self.cost(item)
        self.size += grown
        if len(self._items) > self._capacity:
            # Drop an eighth at once, so that appending to a full log stays O(1) on average.
            grown -= self.trim(max(1, self._capacity // 8))
        return grown

    def trim(self, count: int) -> int:
        """Drop up to ``count`` of the oldest *visible* items; returns the bytes freed."""
        count = min(count, self.visible - self.first + 1)
        if count <= 0:
            return 0
        dropped = self._items[:count]
        del self._items[:count]
        self.first += count
        freed = sum(self.cost(p) for p in dropped)
        self.size -= freed
        return freed

    def read(self, after: int, limit: int) -> list[Published] | None:
        if after + 1 < self.first:
            return None
        count = min(limit, self.visible - after)
        if count <= 0:
            return []
        start = after + 1 - self.first
        return self._items[start : start + count]
