"""A run's history as the Redis broker reads it: the run's Redis Stream from a position up to its
first gap, then the store's from there; the run's head; its recent history as a log.

Everything in a Stream is already durable in the store, so the store is always right and the
Stream only spares it reads. A Stream may lack a durable tail (an owner that died between its
commit and its send; Redis restarted empty) or a middle: a read that stops short of ``limit`` has
reached the store's head.
"""

from __future__ import annotations

from redis.exceptions import RedisError

from runwatch.agents.bus.base import Journal
from runwatch.agents.bus.recent import RecentLog
from runwatch.agents.bus.redis.link import Link
from runwatch.agents.events import Published

#: Events of a run's recent history loaded into memory when this instance starts owning or
#: following it, so that watchers joining then replay it from memory rather than each from Redis.
PRELOAD = 500


class History:
    """See the module docstring."""

    def __init__(self, link: Link, journal: Journal) -> None:
        self._link = link
        self._journal = journal

    async def durable(self, run_id: str, after: int, limit: int) -> list[Published]:
        """Events of a run after ``after``, at most ``limit``: the Stream's, then the store's."""
        items = await self.stream(run_id, after, limit) if self._link.healthy else []
        if len(items) < limit:
            items += await self._journal.events(run_id, items[-1].seq if items else after, limit - len(items))
        return items

    async def stream(self, run_id: str, after: int, limit: int) -> list[Published]:
        """The run's Stream from ``after + 1`` up to its first gap, at most ``limit``; [] if Redis fails."""
        try:
            entries = await self._link.redis.xrange(
                self._link.prefix + "log:" + run_id, min=f"{after + 1}-0", count=limit
            )
        except (RedisError, OSError):
            return []
        items: list[Published] = []
        for entry_id, fields in entries:
            seq = int(entry_id.split(b"-")[0])
            if seq != after + 1 + len(items):
                break
            items.append(Published(run_id, seq, fields[b"t"].decode(), fields[b"d"]))
        return items

    async def head(self, run_id: str) -> int:
        """The run's last position, in its Stream or the store (raises if Redis fails)."""
        last = await self._link.redis.xrevrange(self._link.prefix + "log:" + run_id, count=1)
        stream_head = int(last[0][0].split(b"-")[0]) if last else 0
        return max(stream_head, await self._journal.head(run_id))

    async def log_ending_at(self, run_id: str, head: int, capacity: int) -> RecentLog:
        """A visible log whose last position is ``head``, holding up to ``PRELOAD`` events before it."""
        start = max(0, head - min(PRELOAD, capacity))
        tail = await self.durable(run_id, start, head - start) if head else []
        if not tail or tail[0].seq != start + 1 or tail[-1].seq != head:
            tail = []
        ring = RecentLog(capacity, head - len(tail))
        for p in tail:
            ring.append(p)
        ring.visible = ring.head
        return ring
