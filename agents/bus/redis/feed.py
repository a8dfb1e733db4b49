"""The runs feed, followed from Redis on every instance.

Its positions are Redis's own (the publish script gives each lifecycle event the feed's next one),
and so is its epoch, which changes when Redis loses the feed. Each instance extends the hub's feed
from the feed's channel in order; a message past the next position is a gap, read from the feed's
Stream (or, if Redis no longer holds it, the feed starts again there and its watchers resync).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import structlog

from runwatch.agents.bus.base import LIFECYCLE
from runwatch.agents.bus.hub import Hub
from runwatch.agents.bus.redis.link import Link
from runwatch.agents.events import Published

log = structlog.get_logger()


class Feed:
    """See the module docstring. ``restarted`` is called when Redis began the feed again: its
    watchers are told as on a lost connection, and resync when they come back."""

    def __init__(self, hub: Hub, link: Link, *, restarted: Callable[[], None]) -> None:
        self._hub = hub
        self._link = link
        self._restarted = restarted
        #: The epoch of the feed's positions: Redis's, once connected.
        self.epoch = secrets.token_hex(8)

    async def join(self, epoch: str, head: int) -> None:
        """On (re)connecting: Redis's feed has ``epoch`` and ``head``; catch up with it, or start again."""
        if epoch != self.epoch or head < self._hub.feed.head:
            self.reset(epoch, head)
        elif head > self._hub.feed.head:
            await self.repair(head)

    def reset(self, epoch: str, head: int) -> None:
        self.epoch = epoch
        self._hub.reset_feed(head)

    def on_message(self, data: bytes) -> None:
        """A message on the feed's channel: ``position epoch type run data``."""
        pos_text, epoch, type_, run_id, body = data.split(b" ", 4)
        position = int(pos_text)
        if epoch.decode() != self.epoch:
            # Redis lost the feed (and its epoch) and began it again: so do we. Watchers of the old
            # feed are told as on a lost connection, and resync when they come back.
            log.warning("redis.feed_restarted", epoch=epoch.decode())
            self.reset(epoch.decode(), position - 1)
            self._restarted()
        feed = self._hub.feed
        if position <= feed.head:
            return
        if position > feed.head + 1:
            self._link.spawn(self.repair(position), "repair-feed")
            return
        self._hub.append_feed(Published(run_id.decode(), position, type_.decode(), body))
        self._hub.notify(LIFECYCLE, feed.head)

    async def repair(self, upto: int) -> None:
        """Read the feed's entries up to ``upto`` from its Stream."""
        hub = self._hub
        feed = hub.feed
        entries = await self._link.redis.xrange(self._link.prefix + "feed", min=f"{feed.head + 1}-0", max=f"{upto}-0")
        if feed is not hub.feed or upto <= feed.head:
            return  # reset or repaired meanwhile
        if not entries or int(entries[0][0].split(b"-")[0]) != feed.head + 1:
            # Redis no longer holds the gap: the feed starts again at ``upto``; its followers resync.
            self.reset(self.epoch, upto)
            return
        for entry_id, fields in entries:
            position = int(entry_id.split(b"-")[0])
            if position == feed.head + 1:
                hub.append_feed(Published(fields[b"r"].decode(), position, fields[b"t"].decode(), fields[b"d"]))
        hub.notify(LIFECYCLE, feed.head)

    async def read(self, after: int, limit: int) -> list[Published]:
        """The feed's entries after ``after`` from its Stream; ``LookupError`` if it lacks the next one."""
        entries = await self._link.redis.xrange(self._link.prefix + "feed", min=f"{after + 1}-0", count=limit)
        if not entries or int(entries[0][0].split(b"-")[0]) != after + 1:
            raise LookupError("the runs feed no longer holds that position; reload the runs list")
        return [Published(f[b"r"].decode(), int(i.split(b"-")[0]), f[b"t"].decode(), f[b"d"]) for i, f in entries]
