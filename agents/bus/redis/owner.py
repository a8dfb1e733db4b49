"""Owning runs, for the Redis broker: one instance at a time assigns a run's positions.

An instance owns a run from its ``run.queued``, or from taking it over (its log then continues
from the store's head, its recent history preloaded); ``release``/``disown`` hand it on, keeping
it followed from Redis if anyone here watches it; ``hold`` makes its publishes wait while this
instance cannot tell whether it still owns it (its lease not renewed for a while: Redis away);
``fence`` stops this instance publishing to a run another instance may own now (its lease ran
out, or the store refused one of its positions).
"""

from __future__ import annotations

import asyncio

import structlog

from runwatch.agents.bus.base import Durable, Fenced, Journal
from runwatch.agents.bus.hub import Hub
from runwatch.agents.bus.recent import RecentLog
from runwatch.agents.bus.redis.follow import Follower
from runwatch.agents.bus.redis.history import History
from runwatch.agents.bus.redis.link import Link
from runwatch.agents.bus.redis.outbox import Outbox
from runwatch.agents.bus.sequencer import Sequencer
from runwatch.agents.events import Event, Published

log = structlog.get_logger()

#: How long ``release`` may wait for a run's events to be durable and in Redis.
RELEASE_TIMEOUT = 5.0
#: Runs remembered as fenced (no longer ours to publish); the oldest are forgotten first.
MAX_FENCED = 10_000


class Owner:
    """See the module docstring. Its publishes take positions through a ``Sequencer``; ``durable``
    is the broker's (what a durable batch does), which the journal calls."""

    def __init__(
        self,
        hub: Hub,
        link: Link,
        *,
        journal: Journal,
        history: History,
        follower: Follower,
        outbox: Outbox,
        durable: Durable,
    ) -> None:
        self._hub = hub
        self._link = link
        self._journal = journal
        self._history = history
        self._follower = follower
        self._outbox = outbox
        self._sequencer = Sequencer(hub, journal, open_log=self._open_log, durable=durable)
        #: Runs whose positions this instance assigns; ``_owning``: being opened to be owned.
        self._owned: set[str] = set()
        self._owning: set[str] = set()
        self._fenced: dict[str, None] = {}  # insertion-ordered: the oldest leave first
        #: Held runs (see ``hold``): at most the runs executing here; their publishes wait on the event.
        self._holds: dict[str, asyncio.Event] = {}
        #: One run opened at a time (from the store's head), so two cannot read the same head.
        self._opening = asyncio.Lock()

    def owns(self, run_id: str) -> bool:
        """This instance owns ``run_id``, or is opening it to own it."""
        return run_id in self._owned or run_id in self._owning

    def opening(self, run_id: str) -> bool:
        return run_id in self._owning

    def evicted(self, run_id: str) -> None:
        """The hub let go of the run's log (finished, retained long enough)."""
        self._owned.discard(run_id)

    def close(self) -> None:
        for run_id in list(self._holds):
            self.fence(run_id)  # (its owner was told to stop it: see ClusterSupervisor._stop_rest)

    # -- publishing -------------------------------------------------------------------------------

    async def publish(self, event: Event) -> Published:
        run_id = event.run_id
        if self._holds:
            while (hold := self._holds.get(run_id)) is not None:
                await hold.wait()  # (``fence`` ends the wait too, and the publish is refused below)
        if run_id in self._fenced:
            raise Fenced(f"this instance no longer owns run {run_id}")
        if run_id in self._follower and run_id not in self._owned:
            await self._take_over(run_id)
        return await self._sequencer.publish(event)

    async def _open_log(self, run_id: str, new: bool) -> RecentLog:
        """A run this instance starts owning: a new one, or one whose log continues from the
        store's head, with its recent history in memory."""
        hub = self._hub
        self._owning.add(run_id)
        try:
            if new:
                ring = RecentLog(hub.log_capacity)
                hub.install(run_id, ring)
            else:
                async with self._opening:
                    held = hub.logs.get(run_id)
                    if held is not None:
                        ring = held
                    else:
                        # Our own writes to it still pending (from before a fence) count: wait for them.
                        await self._journal_flush()
                        head = await self._journal.head(run_id)
                        ring = await self._history.log_ending_at(run_id, head, hub.log_capacity)
                        hub.install(run_id, ring)
            self._owned.add(run_id)
            return ring
        finally:
            self._owning.discard(run_id)

    async def _take_over(self, run_id: str) -> None:
        """Start owning a run followed until now: its log continues from the store's head."""
        async with self._opening:
            if run_id not in self._follower or run_id in self._owned:
                return
            self._follower.stop(run_id, keep_log=True)
            ring = self._hub.logs.get(run_id)
            if ring is None:
                return
            await self._journal_flush()
            head = await self._journal.head(run_id)
            while ring.head < head:
                items = await self._history.durable(run_id, ring.head, head - ring.head)
                if not items:
                    break
                self._hub.extend(run_id, items)
            if ring.head == head:
                self._owned.add(run_id)
            else:
                self._hub.drop(run_id)  # ``_open_log`` opens it afresh at the store's head

    # -- handing on -------------------------------------------------------------------------------

    async def sent(self) -> None:
        """Return once everything published so far is durable and in Redis."""
        await self._journal_flush()
        await self._outbox.sent()

    async def release(self, run_id: str) -> None:
        """Stop owning ``run_id`` (another instance publishes its next events), once what it
        published is durable and in Redis; keep following it if anyone here watches it.
        Raises ``TimeoutError`` if that takes longer than ``RELEASE_TIMEOUT``."""
        async with asyncio.timeout(RELEASE_TIMEOUT):
            await self.sent()
        self.disown(run_id)

    def disown(self, run_id: str) -> None:
        """Stop owning ``run_id`` now: follow it from Redis if anyone here watches it, else forget it."""
        self._owned.discard(run_id)
        if run_id not in self._hub.logs:
            return
        if self._hub.watched(run_id) and self._link.healthy:
            self._follower.refollow(run_id)
        else:
            self._hub.drop(run_id)

    # -- holding and fencing ----------------------------------------------------------------------

    def hold(self, run_id: str) -> None:
        """Make publishes of ``run_id`` wait, before they take a position, until ``unhold`` (this
        instance renewed its lease: it still owns the run) or ``fence`` (it does not: they raise
        ``Fenced``). For a run whose lease may have run out while Redis was unreachable."""
        if run_id not in self._holds:
            self._holds[run_id] = asyncio.Event()

    def unhold(self, run_id: str) -> None:
        """Let the publishes of a held run go on."""
        if (hold := self._holds.pop(run_id, None)) is not None:
            hold.set()

    def holding(self, run_id: str) -> bool:
        return run_id in self._holds

    def fence(self, run_id: str) -> None:
        """Refuse further publishes to ``run_id`` from this instance (``Fenced``) until ``unfence``;
        its producers waiting in ``settled`` are released, and its log here is disowned."""
        self._fenced[run_id] = None
        while len(self._fenced) > MAX_FENCED:  # the oldest: long taken over, finished elsewhere
            del self._fenced[next(iter(self._fenced))]
        refuse = getattr(self._journal, "refuse", None)
        if refuse is not None:
            refuse(run_id)  # what it still has of ours for the run is not written
        self.unhold(run_id)  # its held publishes are refused now
        self._hub.release_settled(run_id)
        ring = self._hub.logs.get(run_id)
        if ring is not None and ring.visible < ring.head:
            self._hub.drop(run_id)  # holds positions the store refused or may refuse: not ours to show
            self._owned.discard(run_id)
            if self._hub.watched(run_id):
                self._follower.start(run_id)
            return
        self.disown(run_id)

    def unfence(self, run_id: str) -> None:
        """This instance holds the run again (took its job, claimed its lease, or removed it from
        the queue): it may publish to it."""
        self._fenced.pop(run_id, None)
        accept = getattr(self._journal, "accept", None)
        if accept is not None:
            accept(run_id)

    def fenced(self, run_id: str) -> bool:
        return run_id in self._fenced

    async def _journal_flush(self) -> None:
        flush = getattr(self._journal, "flush", None)
        if flush is not None:
            await flush()
