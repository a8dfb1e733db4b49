"""Following runs owned by other instances, for the Redis broker.

An instance subscribes to a run's channel when a local watcher first follows a run it does not
own, loads the run's recent history and head, and then extends the hub's log of the run from the
channel in ``seq`` order: a message past ``head + 1`` is held while the gap is read from the Stream
or the store (never passed on), a message at or below the head is a duplicate. Local fan-out then
works exactly as in one process (cursors, shared frames, slow-consumer policy).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from runwatch.agents.bus.hub import Hub
from runwatch.agents.bus.redis.history import History
from runwatch.agents.bus.redis.link import Link
from runwatch.agents.events import Published

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


class Follower:
    """See the module docstring. ``owns(run_id)``: this instance owns the run, or is opening it to
    own it (its log here is then the owner's, not to be followed)."""

    def __init__(self, hub: Hub, link: Link, history: History, *, owns: Callable[[str], bool]) -> None:
        self._hub = hub
        self._link = link
        self._history = history
        self._owns = owns
        self._follows: dict[str, Follow] = {}

    def __contains__(self, run_id: object) -> bool:
        """``run_id`` is followed here (maybe still being joined)."""
        return run_id in self._follows

    def _channel(self, run_id: str) -> str:
        return self._link.prefix + "ch:" + run_id

    # -- joining and leaving ----------------------------------------------------------------------

    def start(self, stream: str) -> None:
        """Follow ``stream`` (unless followed already, or Redis is unreachable: see ``Link``)."""
        if stream in self._follows or not self._link.healthy:
            return
        self._follows[stream] = Follow()
        self._link.spawn(self._join(stream), f"follow-{stream}")

    async def _join(self, stream: str) -> None:
        follow = self._follows.get(stream)
        if follow is None:
            return
        hub = self._hub
        try:
            await self._link.subscribe(self._channel(stream))
            head = await self._history.head(stream)
            ring = await self._history.log_ending_at(stream, head, hub.log_capacity) if stream not in hub.logs else None
        except Exception as exc:  # Redis or the store failing: try again while someone watches
            log.warning("redis.follow_failed", run_id=stream, error=repr(exc), retry_in=FOLLOW_RETRY_SECONDS)
            if self._follows.get(stream) is follow:
                self._follows.pop(stream, None)
                asyncio.get_running_loop().call_later(FOLLOW_RETRY_SECONDS, self._retry, stream)
            return
        if self._follows.get(stream) is not follow or self._owns(stream):
            return  # unwatched, or owned here, meanwhile
        if ring is not None and stream not in hub.logs:
            hub.install(stream, ring)
        follow.ready = True
        self._apply_held(stream)
        if visible := hub.logs[stream].visible:
            hub.notify(stream, visible)

    def _retry(self, stream: str) -> None:
        if self._hub.watched(stream) and stream not in self._hub.logs:
            self.start(stream)

    def refollow(self, run_id: str) -> None:
        """Follow a run this instance owned until now (its log here is whole): from its next event."""
        follow = self._follows[run_id] = Follow()
        follow.ready = True
        self._link.spawn(self._refollow(run_id), f"refollow-{run_id}")

    async def _refollow(self, run_id: str) -> None:
        await self._link.subscribe(self._channel(run_id))
        await self.catch_up(run_id)  # what the next owner published before the subscription took effect

    def stop(self, stream: str, *, keep_log: bool = False) -> None:
        """Stop following ``stream``; its log leaves the hub unless ``keep_log`` (its new owner's)."""
        self._follows.pop(stream, None)
        if self._link.pubsub is not None and self._link.healthy:
            self._link.spawn(self._link.unsubscribe(self._channel(stream)), f"unsubscribe-{stream}")
        if not keep_log:
            self._hub.drop(stream)

    def stop_all(self) -> None:
        """Redis is lost: stop following everything (followed again from its head once it is back)."""
        for stream in list(self._follows):
            self.stop(stream)

    # -- messages ---------------------------------------------------------------------------------

    def on_message(self, run_id: str, data: bytes) -> None:
        """A message on a run's channel: ``seq type data``."""
        follow = self._follows.get(run_id)
        if follow is None:
            return  # owned here (our own message coming back) or no longer followed
        seq_text, type_, body = data.split(b" ", 2)
        published = Published(run_id, int(seq_text), type_.decode(), body)
        if not follow.ready or follow.repairing:
            self._hold(run_id, follow, published)
            return
        self._apply(run_id, published)

    def _hold(self, run_id: str, follow: Follow, published: Published) -> None:
        if len(follow.held) >= MAX_HELD:
            # Too much held: let it all go; the repair reads on from the store to the run's head.
            follow.held.clear()
            follow.overflowed = True
            log.warning("redis.follow_overflow", run_id=run_id, held=MAX_HELD)
        follow.held[published.seq] = published

    def _apply(self, run_id: str, published: Published) -> None:
        ring = self._hub.logs.get(run_id)
        follow = self._follows.get(run_id)
        if ring is None or follow is None:
            return
        if published.seq <= ring.head:
            return  # a duplicate
        if published.seq > ring.head + 1:
            self._hold(run_id, follow, published)
            self._start_repair(run_id, follow)
            return
        self._hub.extend(run_id, [published])

    def _apply_held(self, run_id: str) -> None:
        """Apply the held messages that now follow the head; a gap before the rest starts a repair."""
        follow = self._follows.get(run_id)
        ring = self._hub.logs.get(run_id)
        if follow is None or ring is None:
            return
        for seq in sorted(follow.held):
            if seq <= ring.head:
                del follow.held[seq]
            elif seq == ring.head + 1:
                self._hub.extend(run_id, [follow.held.pop(seq)])
            else:
                break
        if follow.held or follow.overflowed:
            self._start_repair(run_id, follow)

    # -- repairing gaps ---------------------------------------------------------------------------

    def _start_repair(self, run_id: str, follow: Follow) -> None:
        if not follow.repairing:
            follow.repairing = True
            self._link.spawn(self._repair(run_id), f"repair-{run_id}")

    async def _repair(self, run_id: str) -> None:
        """Fill the gap before the held messages from the Stream or the store, then apply them.
        Messages let go meanwhile (an overflow) make it read on; a failure is tried again."""
        while True:
            follow = self._follows.get(run_id)
            if follow is None:
                return
            follow.overflowed = False
            try:
                await self.catch_up(run_id)
            except Exception as exc:  # Redis or the store failing: again in a moment
                log.warning("redis.repair_failed", run_id=run_id, error=repr(exc), retry_in=FOLLOW_RETRY_SECONDS)
                await asyncio.sleep(FOLLOW_RETRY_SECONDS)
                continue
            if self._follows.get(run_id) is not follow:
                return
            if not follow.overflowed:
                break
        follow.repairing = False
        ring = self._hub.logs.get(run_id)
        if ring is not None:
            for seq in [s for s in follow.held if s <= ring.head]:
                del follow.held[seq]
        if follow.held and ring is not None and min(follow.held) == ring.head + 1:
            self._apply_held(run_id)
        elif follow.held:  # a message past a gap arrived while this read: read again
            follow.repairing = True
            self._link.spawn(self._repair(run_id), f"repair-{run_id}")

    async def catch_up(self, run_id: str) -> None:
        """Read what is durable after this log's head up to the first held message (or to the
        run's end when messages were dropped), appending it in order."""
        while True:
            ring = self._hub.logs.get(run_id)
            follow = self._follows.get(run_id)
            if ring is None or follow is None:
                return
            wanted = min(follow.held) - 1 if follow.held and not follow.overflowed else None
            limit = 500 if wanted is None else min(500, wanted - ring.head)
            if limit <= 0:
                return
            items = await self._history.durable(run_id, ring.head, limit)
            if not items or self._hub.logs.get(run_id) is not ring:
                return
            self._hub.extend(run_id, items)
