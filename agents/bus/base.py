"""The bus contract: publish per run, read a run's recent log from a position, be woken on news.

The bus holds *policy-free* storage of recent events; the readers (WebSocket connections, SSE
streams) keep their own cursors and decide what to do when they fall behind. That way a publish
costs one encode plus one wake-up per watcher, and a watcher costs one cursor, not a queue copy.
"""

from __future__ import annotations

from typing import Protocol

from runwatch.agents.events import Event, Published

#: The stream name of the lifecycle feed: every run's ``run.*`` events, in publish order.
LIFECYCLE = "*"


class Watcher(Protocol):
    """Something to wake when a stream grows; ``notify`` must not block or raise."""

    def notify(self, stream: str, head: int) -> None: ...


class Sink(Protocol):
    """A consumer that must see every event (store, metrics).

    ``accept`` is called synchronously in publish order. ``ready`` is awaited after each publish and
    is where a sink applies backpressure to producers (it returns at once unless the sink is full).
    """

    def accept(self, published: Published) -> None: ...

    async def ready(self) -> None: ...


class Bus(Protocol):
    async def publish(self, event: Event) -> Published:
        """Assign the next ``seq`` of ``event.run_id`` and ``ts``, encode once, fan out."""
        ...

    def read(self, stream: str, after: int, limit: int) -> list[Published] | None:
        """Events of ``stream`` with position > ``after``, at most ``limit``, in order.

        ``None`` means the bus no longer holds position ``after + 1`` (evicted or never here): read
        the store instead. An empty list means the reader is caught up.
        """
        ...

    def head(self, stream: str) -> int:
        """The last position published on ``stream`` (0 if none is held)."""
        ...

    def watch(self, stream: str, watcher: Watcher) -> None: ...

    def unwatch(self, stream: str, watcher: Watcher) -> None: ...

    def add_sink(self, sink: Sink) -> None: ...


class RingLog:
    """A fixed-capacity log of consecutive positions with O(1) append and O(k) reads of k items.

    Positions start at 1. Once full, each append overwrites the oldest item; ``first`` moves on.
    """

    __slots__ = ("_capacity", "_items", "head")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._items: list[Published] = []
        self.head = 0

    @property
    def first(self) -> int:
        return self.head - len(self._items) + 1

    def append(self, item: Published) -> int:
        self.head += 1
        if len(self._items) < self._capacity:
            self._items.append(item)
        else:
            self._items[(self.head - 1) % self._capacity] = item
        return self.head

    def read(self, after: int, limit: int) -> list[Published] | None:
        if after + 1 < self.first:
            return None
        count = min(limit, self.head - after)
        if count <= 0:
            return []
        cap = self._capacity
        if len(self._items) < cap:
            return self._items[after : after + count]
        items = self._items
        return [items[pos % cap] for pos in range(after, after + count)]
