"""Following runs owned by other instances, and the runs feed, for ``RedisBus`` (``agents.bus.redis``).

An instance subscribes to a run's channel when a local watcher first follows a run it does not
own, loads the run's recent history and head, and then extends its local log from the channel in
``seq`` order: a message past ``head + 1`` is held while the gap is read from the Stream or the
store (never passed on), a message at or below the head is a duplicate. The runs feed is followed
the same way from its own channel, always.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from runwatch.agents.bus.base import LIFECYCLE, Watcher
from runwatch.agents.events import Published

if TYPE_CHECKING:
    from runwatch.agents.bus.redis import RedisBus

log = structlog.get_logger()

#: Messages of a followed run held back while a gap before them is repaired; past it, the follower
#: drops them and reads everything from the gap on from the Stream or the store.
MAX_HELD = 10_000
#: A run that could not be followed (Redis or the store failing) is tried again after this.
FOLLOW_RETRY_SECONDS = 1.0


class Follow:
    """A run this instance follows for its local watchers but does not own."""

    __slots__ = ("held", "overflowed", "ready", "repairing")

    def __init__(self) -> None:
        self.ready = False
        self.repairing = False
        self.overflowed = False
        self.held: dict[int, Published] = {}


class Following:
    """The following half of ``RedisBus`` (a mixin: it uses the bus's state and its other half)."""

    def watch(self: RedisBus, stream: str, watcher: Watcher) -> None:
        super().watch(stream, watcher)
        if stream != LIFECYCLE and stream not in self._logs and stream not in self._owning:
            self._start_follow(stream)

    def unwatch(self: RedisBus, stream: str, watcher: Watcher) -> None:
        super().unwatch(stream, watcher)
        if stream not in self._watchers and stream in self._follows:
            self._unfollow(stream)

    def _start_follow(self: RedisBus, stream: str) -> None:
        if stream in self._follows or not self.healthy:
            return
        self._follows[stream] = Follow()
        self._spawn(self._follow(stream), f"follow-{stream}")

    async def _follow(self: RedisBus, stream: str) -> None:
        follow = self._follows.get(stream)
        if follow is None:
            return
        try:
            await self._subscribe(stream)
            head = await self._remote_head(stream)
            ring = await self._ring_ending_at(stream, head) if stream not in self._logs else None
        except Exception as exc:  # Redis or the store failing: try again while someone watches
            log.warning("redis.follow_failed", run_id=stream, error=repr(exc), retry_in=FOLLOW_RETRY_SECONDS)
            if self._follows.get(stream) is follow:
                self._follows.pop(stream, None)
                asyncio.get_running_loop().call_later(FOLLOW_RETRY_SECONDS, self._retry_follow, stream)
            return
        if self._follows.get(stream) is not follow or stream in self._owned or stream in self._owning:
            return  # unwatched, or owned here, meanwhile
        if ring is not None and stream not in self._logs:
            self._install(stream, ring)
        follow.ready = True
        self._apply_held(stream)
        if visible := self._logs[stream].visible:
            self._notify(stream, visible)

    def _retry_follow(self: RedisBus, stream: str) -> None:
        if stream in self._watchers and stream not in self._logs:
            self._start_follow(stream)

    async def _subscribe(self: RedisBus, stream: str) -> None:
        if self._pubsub is not None:
            await self._pubsub.subscribe(self._prefix + "ch:" + stream)

    def _unfollow(self: RedisBus, stream: str, *, keep_log: bool = False) -> None:
        self._follows.pop(stream, None)
        if self._pubsub is not None and self.healthy:
            self._spawn(self._unsubscribe(stream), f"unsubscribe-{stream}")
        if not keep_log:
            self._drop_log(stream)

    async def _unsubscribe(self: RedisBus, stream: str) -> None:
        try:
            if self._pubsub is not None:
                await self._pubsub.unsubscribe(self._prefix + "ch:" + stream)
        except (RedisError, OSError):
            pass

    async def _remote_head(self: RedisBus, run_id: str) -> int:
        last = await self._redis.xrevrange(self._prefix + "log:" + run_id, count=1)
        stream_head = int(last[0][0].split(b"-")[0]) if last else 0
        return max(stream_head, await self._journal.head(run_id))  # type: ignore[union-attr]

    async def _receive_loop(self: RedisBus) -> None:
        while True:
            pubsub = self._pubsub
            if pubsub is None:
                await self._reconnect()
                continue
            try:
                if not self._connected.is_set():
                    raise RedisConnectionError("the publishing connection failed")
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (RedisError, OSError) as exc:
                self._pubsub = None
                self._lost(exc)
                try:
                    await pubsub.aclose()
                except (RedisError, OSError):
                    pass
                continue
            if message is None or message["type"] != "message":
                continue
            channel: bytes = message["channel"]
            data: bytes = message["data"]
            try:
                if channel == self._control:
                    if self.on_control is not None:
                        self.on_control(data)
                elif channel.endswith(b"feed:ch"):
                    self._on_feed(data)
                else:
                    self._on_run(channel[len(self._pre) + 3 :].decode(), data)
            except Exception:
                log.exception("redis.bad_message", channel=channel[:200])

    def _on_run(self: RedisBus, run_id: str, data: bytes) -> None:
        follow = self._follows.get(run_id)
        if follow is None:
            return  # owned here (our own message coming back) or no longer followed
        seq_text, type_, body = data.split(b" ", 2)
        published = Published(run_id, int(seq_text), type_.decode(), body)
        if not follow.ready or follow.repairing:
            self._hold(run_id, follow, published)
            return
        self._apply(run_id, published)

    def _hold(self: RedisBus, run_id: str, follow: Follow, published: Published) -> None:
        if len(follow.held) >= MAX_HELD:
            # Too much held: let it all go; the repair reads on from the store to the run's head.
            follow.held.clear()
            follow.overflowed = True
            log.warning("redis.follow_overflow", run_id=run_id, held=MAX_HELD)
        follow.held[published.seq] = published

    def _apply(self: RedisBus, run_id: str, published: Published) -> None:
        ring = self._logs.get(run_id)
        follow = self._follows.get(run_id)
        if ring is None or follow is None:
            return
        if published.seq <= ring.head:
            return  # a duplicate
        if published.seq > ring.head + 1:
            self._hold(run_id, follow, published)
            if not follow.repairing:
                follow.repairing = True
                self._spawn(self._repair(run_id), f"repair-{run_id}")
            return
        self._append_all(run_id, [published])

    def _apply_held(self: RedisBus, run_id: str) -> None:
        """Apply the held messages that now follow the head; a gap before the rest starts a repair."""
        follow = self._follows.get(run_id)
        ring = self._logs.get(run_id)
        if follow is None or ring is None:
            return
        for seq in sorted(follow.held):
            if seq <= ring.head:
                del follow.held[seq]
            elif seq == ring.head + 1:
                self._append_all(run_id, [follow.held.pop(seq)])
            else:
                break
        if (follow.held or follow.overflowed) and not follow.repairing:
            follow.repairing = True
            self._spawn(self._repair(run_id), f"repair-{run_id}")

    def _append_all(self: RedisBus, run_id: str, items: Sequence[Published]) -> None:
        ring = self._logs[run_id]
        for p in items:
            if p.seq == ring.head + 1:
                self._grow(ring.append(p))
                ring.visible = ring.head
                if p.type == "run.finished":
                    self._retire(run_id)
        self._notify(run_id, ring.visible)

    async def _repair(self: RedisBus, run_id: str) -> None:
        """Fill the gap before the held messages from the Stream or the store, then apply them.
        Messages let go meanwhile (an overflow) make it read on; a failure is tried again."""
        while True:
            follow = self._follows.get(run_id)
            if follow is None:
                return
            follow.overflowed = False
            try:
                await self._catch_up(run_id)
            except Exception as exc:  # Redis or the store failing: again in a moment
                log.warning("redis.repair_failed", run_id=run_id, error=repr(exc), retry_in=FOLLOW_RETRY_SECONDS)
                await asyncio.sleep(FOLLOW_RETRY_SECONDS)
                continue
            if self._follows.get(run_id) is not follow:
                return
            if not follow.overflowed:
                break
        follow.repairing = False
        ring = self._logs.get(run_id)
        if ring is not None:
            for seq in [s for s in follow.held if s <= ring.head]:
                del follow.held[seq]
        if follow.held and ring is not None and min(follow.held) == ring.head + 1:
            self._apply_held(run_id)
        elif follow.held:  # a message past a gap arrived while this read: read again
            follow.repairing = True
            self._spawn(self._repair(run_id), f"repair-{run_id}")

    async def _catch_up(self: RedisBus, run_id: str) -> None:
        """Read what is durable after this log's head up to the first held message (or to the
        run's end when messages were dropped), appending it in order."""
        while True:
            ring = self._logs.get(run_id)
            follow = self._follows.get(run_id)
            if ring is None or follow is None:
                return
            wanted = min(follow.held) - 1 if follow.held and not follow.overflowed else None
            limit = 500 if wanted is None else min(500, wanted - ring.head)
            if limit <= 0:
                return
            items = await self._read_durable(run_id, ring.head, limit)
            if not items or self._logs.get(run_id) is not ring:
                return
            self._append_all(run_id, items)

    # -- the runs feed ----------------------------------------------------------------------------

    def _on_feed(self: RedisBus, data: bytes) -> None:
        pos_text, epoch, type_, run_id, body = data.split(b" ", 4)
        position = int(pos_text)
        if epoch.decode() != self.feed_epoch:
            # Redis lost the feed (and its epoch) and began it again: so do we. Watchers of the old
            # feed are told as on a lost connection, and resync when they come back.
            log.warning("redis.feed_restarted", epoch=epoch.decode())
            self._reset_feed(epoch.decode(), position - 1)
            self._tell_lost()
        feed = self._feed
        if position <= feed.head:
            return
        if position > feed.head + 1:
            self._spawn(self._repair_feed(position), "repair-feed")
            return
        self._grow(feed.append(Published(run_id.decode(), position, type_.decode(), body)))
        feed.visible = feed.head
        self._notify(LIFECYCLE, feed.head)

    async def _repair_feed(self: RedisBus, upto: int) -> None:
        feed = self._feed
        entries = await self._redis.xrange(self._prefix + "feed", min=f"{feed.head + 1}-0", max=f"{upto}-0")
        if feed is not self._feed or upto <= feed.head:
            return  # reset or repaired meanwhile
        if not entries or int(entries[0][0].split(b"-")[0]) != feed.head + 1:
            # Redis no longer holds the gap: the feed starts again at ``upto``; its followers resync.
            self._reset_feed(self.feed_epoch, upto)
            return
        for entry_id, fields in entries:
            position = int(entry_id.split(b"-")[0])
            if position == feed.head + 1:
                self._grow(feed.append(Published(fields[b"r"].decode(), position, fields[b"t"].decode(), fields[b"d"])))
        feed.visible = feed.head
        self._notify(LIFECYCLE, feed.head)
