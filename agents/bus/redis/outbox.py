"""Durable events on their way to Redis, sent in order on the publishing connection.

Each batch is one call of the Lua script (``scripts.PUBLISH``): every event appended to its run's
Stream with its ``seq`` as the entry id and published on the run's channel, lifecycle events given
the runs feed's next position too. A batch that fails on a lost connection is sent again once
Redis is back (an entry id must grow, so nothing is added twice); one Redis refuses (full) is
skipped. Past ``MAX_OUTBOX`` events or ``MAX_OUTBOX_BYTES`` the oldest are dropped from the Redis
path only: they are durable in the store, where followers repairing a gap find them.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence

import structlog
from redis.exceptions import RedisError

from runwatch.agents.bus.recent import Watermark
from runwatch.agents.bus.redis.link import CONNECTION_ERRORS, Link
from runwatch.agents.bus.redis.scripts import PUBLISH
from runwatch.agents.events import Published

log = structlog.get_logger()

#: Entries a run's Redis Stream keeps (approximately: ``MAXLEN ~``); older ones are read from the store.
STREAM_MAXLEN = 2_000
#: Events (and bytes) waiting to be sent to Redis; past either the oldest are dropped from the
#: Redis path only (they are durable in the store, where followers repairing a gap find them).
MAX_OUTBOX = 100_000
MAX_OUTBOX_BYTES = 64 * 1024 * 1024
#: Events one script call sends.
SCRIPT_BATCH = 500


class Outbox:
    """See the module docstring. ``run`` is the send loop; ``lost(exc)`` is called when a send finds
    the connection lost (the broker reconnects)."""

    def __init__(
        self,
        link: Link,
        *,
        feed_capacity: int,
        live_seconds: int,
        retain_seconds: int,
        lost: Callable[[BaseException], None],
    ) -> None:
        self._link = link
        self._script = link.sender.register_script(PUBLISH)
        self._feed_capacity = feed_capacity
        self._live = live_seconds
        self._retain = retain_seconds
        self._lost = lost
        #: Durable events not yet sent to Redis, oldest first.
        self._items: list[Published] = []
        self._bytes = 0
        self._queued = 0
        self._sent = Watermark()
        self._has_news = asyncio.Event()
        self._dropped_reported = False

    def __len__(self) -> int:
        return len(self._items)

    def add(self, batch: Sequence[Published]) -> None:
        """Queue a durable batch to be sent."""
        self._items.extend(batch)
        self._queued += len(batch)
        self._bytes += sum(len(p.data) for p in batch)
        if len(self._items) > MAX_OUTBOX or self._bytes > MAX_OUTBOX_BYTES:
            self._trim()
        self._has_news.set()

    async def sent(self) -> None:
        """Return once everything queued so far is sent (or dropped from the Redis path)."""
        await self._sent.reached(self._queued)

    def _trim(self) -> None:
        drop = max(len(self._items) - MAX_OUTBOX, len(self._items) // 8, 1)
        dropped, self._items[:drop] = self._items[:drop], []
        self._bytes -= sum(len(p.data) for p in dropped)
        self._sent.advance(len(dropped))
        if not self._dropped_reported:
            self._dropped_reported = True
            log.error("redis.outbox_full", dropped=len(dropped), hint="followers read them from the store")

    async def run(self) -> None:
        while True:
            await self._has_news.wait()
            self._has_news.clear()
            while self._items:
                await self._link.connected.wait()
                # Taken out before the call: a trim while it is in flight drops only what waits.
                batch, self._items[:SCRIPT_BATCH] = self._items[:SCRIPT_BATCH], []
                size = sum(len(p.data) for p in batch)
                self._bytes -= size
                args: list[str | bytes | int] = [
                    self._link.prefix,
                    STREAM_MAXLEN,
                    self._feed_capacity,
                    self._live,
                    self._retain,
                    secrets.token_hex(8),
                ]
                for p in batch:
                    args += (p.run_id, p.seq, p.type, p.data)
                try:
                    await self._script(args=args)
                except CONNECTION_ERRORS as exc:
                    self._items[:0] = batch  # sent again once Redis is back (a position is added once)
                    self._bytes += size
                    if len(self._items) > MAX_OUTBOX or self._bytes > MAX_OUTBOX_BYTES:
                        self._trim()
                    if self._link.connected.is_set():
                        self._lost(exc)  # the receive loop reconnects
                    continue
                except RedisError as exc:  # refused (a full Redis: OOM): durable in the store, skipped here
                    log.error("redis.publish_refused", error=repr(exc), events=len(batch))
                self._sent.advance(len(batch))
