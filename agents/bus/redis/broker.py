"""The Redis broker: many instances, one history per run, fan-out through one subscriber connection each.

Publishing (the run's owner, the one instance executing it: ``owner.Owner``): positions are
assigned in memory as by the memory broker; once the journal (PostgreSQL) has made a batch durable,
one Lua script appends each event to its run's Redis Stream, with its ``seq`` as the entry id
(``seq-0``, ``MAXLEN ~``), and publishes the same bytes with that position on the run's channel —
history and fan-out in one atomic step, which can never disagree (``outbox.Outbox``). Lifecycle
events also get the next position of the runs feed, a Redis Stream and channel of its own
(``feed.Feed``). An entry id must grow, so a batch sent twice (a retry) adds nothing twice.

Everything in Redis is therefore already durable in the store: losing Redis loses no event, and
the positions of a run stay those of the store (the run logs' epoch is the store's). The runs
feed's positions are Redis's own; its epoch lives in Redis and changes when Redis loses it.

Following (any instance: ``follow.Follower``): an instance subscribes to a run's channel when a
local watcher first follows a run it does not own, learns the run's head, and from then on extends
the hub's log of it from the channel, so local fan-out works exactly as in one process (cursors,
shared frames, slow-consumer policy). A message past ``head + 1`` (PUB/SUB delivers at most once)
is held back while the gap is read from the Stream, or the store if the Stream no longer has it;
a message at or below the head is a duplicate and dropped. Readers of older positions read the
Stream, then the store (``history.History``).

Ownership. A run's positions are assigned by one instance at a time: the one executing it (or
ending it). ``release`` hands a run on (its events durable and in Redis first); ``fence`` stops an
instance publishing a run it may no longer own (its lease ran out, or the store refused one of
its positions because another instance wrote it first): its further publishes raise ``Fenced``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from runwatch.agents.bus.base import LIFECYCLE, Journal
from runwatch.agents.bus.hub import Hub
from runwatch.agents.bus.node import Node
from runwatch.agents.bus.redis.feed import Feed
from runwatch.agents.bus.redis.follow import Follower
from runwatch.agents.bus.redis.history import History
from runwatch.agents.bus.redis.link import Link
from runwatch.agents.bus.redis.outbox import Outbox
from runwatch.agents.bus.redis.owner import Owner
from runwatch.agents.events import Event, Published

log = structlog.get_logger()


class StoreMismatch(RuntimeError):
    """The Redis prefix is in use by a deployment on another database."""


class RedisBroker:
    """See the module docstring: a ``base.Broker`` and a ``base.Ownership``. ``healthy`` is False
    while Redis is unreachable (``problem`` says why); ``on_lost`` callbacks run once each time the
    connection is lost; ``on_fenced`` ones when the store refuses this instance's position in a run
    (another instance owns it now); ``on_control`` gets the deployment's control messages."""

    #: ``Owner.publish`` itself: no call of this class's own per event.
    publish: Callable[[Event], Coroutine[Any, Any, Published]]

    def __init__(
        self,
        hub: Hub,
        url: str,
        *,
        journal: Journal,
        prefix: str = "runwatch:",
        retain_seconds: float = 3600.0,
        live_seconds: float = 86_400.0,
    ) -> None:
        self._hub = hub
        self._journal = journal
        retain = int(max(1, retain_seconds))
        self._link = link = Link(url, prefix)
        self._history = History(link, journal)
        self._outbox = Outbox(
            link,
            feed_capacity=hub.feed_capacity,
            live_seconds=int(max(retain, live_seconds)),
            retain_seconds=retain,
            lost=self._lost,
        )
        self._feed = Feed(hub, link, restarted=self._tell_lost)
        self._follower = Follower(hub, link, self._history, owns=self._owns)
        self._owner = Owner(
            hub,
            link,
            journal=journal,
            history=self._history,
            follower=self._follower,
            outbox=self._outbox,
            durable=self._on_durable,
        )
        self.publish = self._owner.publish
        hub.on_evicted.append(self._owner.evicted)
        self._tasks: list[asyncio.Task[None]] = []
        self.on_lost: list[Callable[[], None]] = []
        #: Called each time the connection is made (at start, and back after a loss).
        self.on_connected: list[Callable[[], None]] = []
        self.on_fenced: list[Callable[[str], None]] = []
        #: Messages on the deployment's control channel (cancel requests, queue wake-ups) go here.
        self.control_channel = prefix + "control"
        self.on_control: Callable[[bytes], None] | None = None
        self._control = self.control_channel.encode()
        journal.on_durable(self._on_durable)
        journal.on_conflict(self._on_conflict)

    @property
    def redis(self) -> aioredis.Redis:
        """The connections for commands (the run queue, limits and control channel use them too)."""
        return self._link.redis

    @property
    def healthy(self) -> bool:
        return self._link.healthy

    @property
    def problem(self) -> str | None:
        return self._link.problem

    @property
    def epoch(self) -> str:
        return self._journal.epoch

    @property
    def feed_epoch(self) -> str:
        return self._feed.epoch

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``coro`` in the background, kept and closed with the broker; what it raises is logged."""
        self._link.spawn(coro, name)

    def _owns(self, run_id: str) -> bool:
        return self._owner.owns(run_id)

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._connect()
        self._tasks = [
            asyncio.create_task(self._outbox.run(), name="runwatch-redis-send"),
            asyncio.create_task(self._receive_loop(), name="runwatch-redis-receive"),
        ]

    async def close(self) -> None:
        self._owner.close()
        try:
            await asyncio.wait_for(self._outbox.sent(), 3.0)
        except (TimeoutError, RedisError):
            log.warning("redis.close_unsent", events=len(self._outbox))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._link.close()

    async def _connect(self) -> None:
        """Subscribe to the runs feed and the control channel, check that this Redis belongs to
        this store, learn the feed's epoch and head, and follow again what watchers follow."""
        link, prefix = self._link, self._link.prefix
        store = self._journal.epoch
        await link.redis.set(prefix + "store", store, nx=True)
        known = (await link.redis.get(prefix + "store") or b"").decode()
        if known != store:
            raise StoreMismatch(
                f"the Redis prefix {prefix!r} belongs to a deployment with another database (store epoch "
                f"{known}, this one's {store}); every instance of a deployment needs the same RUNWATCH_DATABASE_URL"
                " (or give this one its own RUNWATCH_REDIS_PREFIX)"
            )
        await link.redis.set(prefix + "feed:epoch", secrets.token_hex(8), nx=True)
        epoch = (await link.redis.get(prefix + "feed:epoch")).decode()
        head = int(await link.redis.get(prefix + "feed:seq") or 0)
        pubsub = link.redis.pubsub()
        await pubsub.subscribe(prefix + "feed:ch", self.control_channel)
        link.pubsub = pubsub
        await self._feed.join(epoch, head)
        link.healthy, link.problem = True, None
        link.connected.set()
        for stream in self._hub.watched_streams():
            self.watched(stream)
        log.info("redis.connected", feed_epoch=epoch, feed_head=head, prefix=prefix)
        for callback in self.on_connected:
            try:
                callback()
            except Exception:
                log.exception("redis.on_connected_failed")

    def _lost(self, exc: BaseException) -> None:
        link = self._link
        was_healthy = link.healthy
        link.healthy, link.problem = False, f"Redis is unreachable: {exc}"
        link.connected.clear()
        if not was_healthy:
            return
        log.error("redis.lost", error=repr(exc))
        # Followed runs are followed again from their head once Redis is back; what a watcher
        # missed meanwhile it reads from the Stream or the store.
        self._follower.stop_all()
        self._tell_lost()

    def _tell_lost(self) -> None:
        for callback in self.on_lost:
            try:
                callback()
            except Exception:
                log.exception("redis.on_lost_failed")

    async def _reconnect(self) -> None:
        delay = 0.1
        link = self._link
        while True:
            await asyncio.sleep(delay)
            try:
                if link.pubsub is not None:
                    await link.pubsub.aclose()
                    link.pubsub = None
                await self._connect()
                return
            except (RedisError, OSError) as exc:
                link.problem = f"Redis is unreachable: {exc}"
                delay = min(2.0, delay * 2)
            except StoreMismatch as exc:
                link.problem = str(exc)
                log.error("redis.store_mismatch", error=str(exc))
                delay = 5.0

    async def _receive_loop(self) -> None:
        link = self._link
        runs = len(link.pre) + 3  # a run's channel: prefix + "ch:" + run id
        while True:
            pubsub = link.pubsub
            if pubsub is None:
                await self._reconnect()
                continue
            try:
                if not link.connected.is_set():
                    raise RedisConnectionError("the publishing connection failed")
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (RedisError, OSError) as exc:
                link.pubsub = None
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
                    self._feed.on_message(data)
                else:
                    self._follower.on_message(channel[runs:].decode(), data)
            except Exception:
                log.exception("redis.bad_message", channel=channel[:200])

    # -- the hub's side ---------------------------------------------------------------------------

    def _on_durable(self, batch: Sequence[Published]) -> None:
        """Durable: visible to this instance's watchers now, and on its way to Redis."""
        self._hub.show(batch)
        self._outbox.add(batch)

    def watched(self, stream: str) -> None:
        if stream != LIFECYCLE and stream not in self._hub.logs and not self._owner.opening(stream):
            self._follower.start(stream)

    def unwatched(self, stream: str) -> None:
        if stream in self._follower:
            self._follower.stop(stream)

    # -- reading ----------------------------------------------------------------------------------

    async def read(self, stream: str, after: int, limit: int) -> list[Published]:
        items = self._hub.recent(stream, after, limit)
        if items is not None:
            return items
        if stream == LIFECYCLE:
            return await self._feed.read(after, limit)
        return await self._history.durable(stream, after, limit)

    async def replay(self, run_id: str, after: int, limit: int) -> list[Published]:
        items = await self.read(run_id, after, limit)
        if len(items) < limit and run_id in self._follower:
            # A followed run's log here trails its owner's commits (a message in flight; an owner
            # that died before sending its last events): the store has them.
            items += await self._journal.events(run_id, items[-1].seq if items else after, limit - len(items))
        return items

    async def position(self, run_id: str) -> int:
        if run_id == LIFECYCLE:
            return self._hub.feed.visible
        return max(self._hub.head(run_id), await self._journal.head(run_id))

    # -- ownership (``base.Ownership``; see ``owner.Owner``) --------------------------------------

    async def sent(self) -> None:
        await self._owner.sent()

    async def release(self, run_id: str) -> None:
        await self._owner.release(run_id)

    def disown(self, run_id: str) -> None:
        self._owner.disown(run_id)

    def hold(self, run_id: str) -> None:
        self._owner.hold(run_id)

    def unhold(self, run_id: str) -> None:
        self._owner.unhold(run_id)

    def holding(self, run_id: str) -> bool:
        return self._owner.holding(run_id)

    def fence(self, run_id: str) -> None:
        self._owner.fence(run_id)

    def unfence(self, run_id: str) -> None:
        self._owner.unfence(run_id)

    def fenced(self, run_id: str) -> bool:
        return self._owner.fenced(run_id)

    def _on_conflict(self, run_id: str) -> None:
        """The store holds other events at positions this instance gave out: another instance
        owns the run. Stop publishing it; the supervisor stops executing it."""
        log.error("run.position_conflict", run_id=run_id, hint="another instance owns this run now")
        self._owner.fence(run_id)
        for callback in self.on_fenced:
            try:
                callback(run_id)
            except Exception:
                log.exception("redis.on_fenced_failed")


def RedisBus(
    url: str,
    *,
    journal: Journal,
    prefix: str = "runwatch:",
    retain_seconds: float = 3600.0,
    live_seconds: float = 86_400.0,
    log_capacity: int = 10_000,
    feed_capacity: int = 1_000,
    memory_bytes: int = 256 * 1024 * 1024,
    max_retained: int = 256,
) -> Node[RedisBroker]:
    """An instance's bus in a deployment of many: a ``Hub`` composed with a ``RedisBroker``.
    ``retain_seconds`` and ``live_seconds`` are how long Redis keeps a finished and a live run's
    Stream; the hub keeps a finished run's log its default 60 s."""
    hub = Hub(
        log_capacity=log_capacity, feed_capacity=feed_capacity, memory_bytes=memory_bytes, max_retained=max_retained
    )
    return Node(
        hub,
        RedisBroker(hub, url, journal=journal, prefix=prefix, retain_seconds=retain_seconds, live_seconds=live_seconds),
    )
