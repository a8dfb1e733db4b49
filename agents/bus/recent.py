"""The two counting structures the bus is built of: a run's recent events held in memory
(``RecentLog``, bounded by count and by bytes) and a count that only grows with futures waiting
for it (``Watermark``: what a writer has written, what a sender has sent)."""

from __future__ import annotations

import asyncio

from runwatch.agents.events import Published


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
