"""Owning runs, for ``RedisBus`` (``agents.bus.redis``): one instance at a time assigns a run's positions.

An instance owns a run from its ``run.queued``, or from taking it over (its log then continues
from the store's head, its recent history preloaded); ``release``/``disown`` hand it on, keeping
it followed from Redis if anyone here watches it; ``hold`` makes its publishes wait while this
instance cannot tell whether it still owns it (its lease not renewed for a while: Redis away);
``fence`` stops this instance publishing to a run another instance may own now (its lease ran
out, or the store refused one of its positions).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from runwatch.agents.bus.base import Fenced, RecentLog
from runwatch.agents.bus.redis_follow import Follow
from runwatch.agents.events import Event, Published

if TYPE_CHECKING:
    from runwatch.agents.bus.redis import RedisBus

log = structlog.get_logger()

#: Events of a run's recent history loaded into memory when this instance starts owning or
#: following it, so that watchers joining then replay it from memory rather than each from Redis.
PRELOAD = 500
#: How long ``release`` may wait for a run's events to be durable and in Redis.
RELEASE_TIMEOUT = 5.0
#: Runs remembered as fenced (no longer ours to publish); the oldest are forgotten first.
MAX_FENCED = 10_000


class Owning:
    """The owning half of ``RedisBus`` (a mixin: it uses the bus's state and its other halves)."""

    async def publish(self: RedisBus, event: Event) -> Published:
        run_id = event.run_id
        if self._holds:
            while (hold := self._holds.get(run_id)) is not None:
                await hold.wait()  # (``fence`` ends the wait too, and the publish is refused below)
        if run_id in self._fenced:
            raise Fenced(f"this instance no longer owns run {run_id}")
        if run_id in self._follows and run_id not in self._owned:
            await self._take_over(run_id)
        return await super().publish(event)

    async def _open_log(self: RedisBus, run_id: str, *, new: bool) -> RecentLog:
        """A run this instance starts owning: a new one, or one whose log continues from the
        store's head, with its recent history in memory."""
        self._owning.add(run_id)
        try:
            if new:
                ring = await super()._open_log(run_id, new=True)
            else:
                async with self._opening:
                    ring = self._logs.get(run_id)
                    if ring is None:
                        # Our own writes to it still pending (from before a fence) count: wait for them.
                        await self._journal_flush()
                        head = await self._journal.head(run_id)  # type: ignore[union-attr]
                        ring = await self._ring_ending_at(run_id, head)
                        self._install(run_id, ring)
            self._owned.add(run_id)
            return ring
        finally:
            self._owning.discard(run_id)

    async def _take_over(self: RedisBus, run_id: str) -> None:
        """Start owning a run followed until now: its log continues from the store's head."""
        async with self._opening:
            if run_id not in self._follows or run_id in self._owned:
                return
            self._unfollow(run_id, keep_log=True)
            ring = self._logs.get(run_id)
            if ring is None:
                return
            await self._journal_flush()
            head = await self._journal.head(run_id)  # type: ignore[union-attr]
            while ring.head < head:
                items = await self._read_durable(run_id, ring.head, head - ring.head)
                if not items:
                    break
                self._append_all(run_id, items)
            if ring.head == head:
                self._owned.add(run_id)
            else:
                self._drop_log(run_id)  # ``_open_log`` opens it afresh at the store's head

    def _install(self: RedisBus, run_id: str, ring: RecentLog) -> None:
        self._logs[run_id] = ring
        self._grow(ring.size)

    async def _ring_ending_at(self: RedisBus, run_id: str, head: int) -> RecentLog:
        """A log whose last position is ``head``, holding up to ``PRELOAD`` events before it."""
        start = max(0, head - min(PRELOAD, self._log_capacity))
        tail = await self._read_durable(run_id, start, head - start) if head else []
        if not tail or tail[0].seq != start + 1 or tail[-1].seq != head:
            tail = []
        ring = RecentLog(self._log_capacity, head - len(tail))
        for p in tail:
            ring.append(p)
        ring.visible = ring.head
        return ring

    async def sent(self: RedisBus) -> None:
        """Return once everything published so far is durable and in Redis."""
        await self._journal_flush()
        await self._sent.reached(self._queued)

    async def release(self: RedisBus, run_id: str) -> None:
        """Stop owning ``run_id`` (another instance publishes its next events), once what it
        published is durable and in Redis; keep following it if anyone here watches it.
        Raises ``TimeoutError`` if that takes longer than ``RELEASE_TIMEOUT``."""
        async with asyncio.timeout(RELEASE_TIMEOUT):
            await self.sent()
        self.disown(run_id)

    def disown(self: RedisBus, run_id: str) -> None:
        """Stop owning ``run_id`` now: follow it from Redis if anyone here watches it, else forget it."""
        self._owned.discard(run_id)
        if run_id not in self._logs:
            return
        if run_id in self._watchers and self.healthy:
            follow = self._follows[run_id] = Follow()
            follow.ready = True
            self._spawn(self._refollow(run_id), f"refollow-{run_id}")
        else:
            self._drop_log(run_id)

    async def _refollow(self: RedisBus, run_id: str) -> None:
        await self._subscribe(run_id)
        await self._catch_up(run_id)  # what the next owner published before the subscription took effect

    def hold(self: RedisBus, run_id: str) -> None:
        """Make publishes of ``run_id`` wait, before they take a position, until ``unhold`` (this
        instance renewed its lease: it still owns the run) or ``fence`` (it does not: they raise
        ``Fenced``). For a run whose lease may have run out while Redis was unreachable."""
        if run_id not in self._holds:
            self._holds[run_id] = asyncio.Event()

    def unhold(self: RedisBus, run_id: str) -> None:
        """Let the publishes of a held run go on."""
        if (hold := self._holds.pop(run_id, None)) is not None:
            hold.set()

    def holding(self: RedisBus, run_id: str) -> bool:
        return run_id in self._holds

    def fence(self: RedisBus, run_id: str) -> None:
        """Refuse further publishes to ``run_id`` from this instance (``Fenced``) until ``unfence``;
        its producers waiting in ``settled`` are released, and its log here is disowned."""
        self._fenced[run_id] = None
        while len(self._fenced) > MAX_FENCED:  # the oldest: long taken over, finished elsewhere
            del self._fenced[next(iter(self._fenced))]
        refuse = getattr(self._journal, "refuse", None)
        if refuse is not None:
            refuse(run_id)  # what it still has of ours for the run is not written
        self.unhold(run_id)  # its held publishes are refused now
        for _, future in self._settling.pop(run_id, []):
            if not future.done():
                future.set_result(None)
        ring = self._logs.get(run_id)
        if ring is not None and ring.visible < ring.head:
            self._drop_log(run_id)  # holds positions the store refused or may refuse: not ours to show
            self._owned.discard(run_id)
            if run_id in self._watchers:
                self._start_follow(run_id)
            return
        self.disown(run_id)

    def unfence(self: RedisBus, run_id: str) -> None:
        """This instance holds the run again (took its job, claimed its lease, or removed it from
        the queue): it may publish to it."""
        self._fenced.pop(run_id, None)
        accept = getattr(self._journal, "accept", None)
        if accept is not None:
            accept(run_id)

    def _on_conflict(self: RedisBus, run_id: str) -> None:
        """The store holds other events at positions this instance gave out: another instance
        owns the run. Stop publishing it; the supervisor stops executing it."""
        log.error("run.position_conflict", run_id=run_id, hint="another instance owns this run now")
        self.fence(run_id)
        for callback in self.on_fenced:
            try:
                callback(run_id)
            except Exception:
                log.exception("redis.on_fenced_failed")

    async def _journal_flush(self: RedisBus) -> None:
        flush = getattr(self._journal, "flush", None)
        if flush is not None:
            await flush()
