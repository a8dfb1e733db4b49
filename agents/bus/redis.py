"""The Redis bus: many instances, one history per run, fan-out through one subscriber connection each.

Publishing (the run's owner, the one instance executing it): positions are assigned in memory as by
``MemoryBus``; once the journal (PostgreSQL) has made a batch durable, one Lua script appends each
event to its run's Redis Stream, with its ``seq`` as the entry id (``seq-0``, ``MAXLEN ~``), and
publishes the same bytes with that position on the run's channel — history and fan-out in one
atomic step, which can never disagree. Lifecycle events also get the next position of the runs
feed, a Redis Stream and channel of its own. An entry id must grow, so a batch sent twice (a retry)
adds nothing twice.

Everything in Redis is therefore already durable in the store: losing Redis loses no event, and
the positions of a run stay those of the store (the run logs' epoch is the store's). The runs
feed's positions are Redis's own; its epoch lives in Redis and changes when Redis loses it.

Following (any instance): an instance subscribes to a run's channel when a local watcher first
follows a run it does not own, learns the run's head, and from then on extends a local
``RecentLog`` from the channel, so local fan-out works exactly as in one process (cursors,
shared frames, slow-consumer policy). A message past ``head + 1`` (PUB/SUB delivers at most once)
is held back while the gap is read from the Stream, or the store if the Stream no longer has it;
a message at or below the head is a duplicate and dropped. Readers of older positions read the
Stream, then the store.

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
from redis.exceptions import TimeoutError as RedisTimeoutError

from runwatch.agents.bus.base import LIFECYCLE, Journal, RecentLog, Watermark
from runwatch.agents.bus.memory import MemoryBus
from runwatch.agents.bus.redis_follow import Follow, Following
from runwatch.agents.bus.redis_owner import Owning
from runwatch.agents.bus.redis_scripts import PUBLISH
from runwatch.agents.events import Published

log = structlog.get_logger()

#: Entries a run's Redis Stream keeps (approximately: ``MAXLEN ~``); older ones are read from the store.
STREAM_MAXLEN = 2_000
#: Events (and bytes) waiting to be sent to Redis; past either the oldest are dropped from the
#: Redis path only (they are durable in the store, where followers repairing a gap find them).
MAX_OUTBOX = 100_000
MAX_OUTBOX_BYTES = 64 * 1024 * 1024
#: Connections to Redis per instance for commands and reads (the subscriber's included); more
#: callers wait their turn. Publishing has a connection of its own, so reads never delay it.
REDIS_CONNECTIONS = 32
#: Events one script call sends.
SCRIPT_BATCH = 500

_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisBus(Owning, Following, MemoryBus):
    """See the module docstring. ``healthy`` is False while Redis is unreachable (``problem`` says
    why); ``on_lost`` callbacks run once each time the connection is lost; ``on_fenced`` ones when
    the store refuses this instance's position in a run (another instance owns it now)."""

    def __init__(
        self,
        url: str,
        *,
        journal: Journal,
        prefix: str = "runwatch:",
        retain_seconds: float = 3600.0,
        live_seconds: float = 86_400.0,
        feed_capacity: int = 1_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(journal=journal, feed_capacity=feed_capacity, **kwargs)
        self._prefix = prefix
        self._pre = prefix.encode()
        self._retain = int(max(1, retain_seconds))
        self._live = int(max(self._retain, live_seconds))
        self._feed_capacity = feed_capacity
        timeouts = {"socket_connect_timeout": 2, "socket_timeout": 5}
        # Callers wait for a free connection (rather than fail) when a thousand watchers read at once.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=REDIS_CONNECTIONS, timeout=10, **timeouts)
        self._redis = aioredis.Redis(connection_pool=pool)
        sender = aioredis.BlockingConnectionPool.from_url(url, max_connections=1, timeout=10, **timeouts)
        self._sender = aioredis.Redis(connection_pool=sender)
        self._script = self._sender.register_script(PUBLISH)
        self._pubsub: aioredis.client.PubSub | None = None
        self._follows: dict[str, Follow] = {}
        #: Runs whose positions this instance assigns; ``_owning``: being opened to be owned.
        self._owned: set[str] = set()
        self._owning: set[str] = set()
        self._fenced: dict[str, None] = {}  # insertion-ordered: the oldest leave first
        #: Held runs (see ``hold``): at most the runs executing here; their publishes wait on the event.
        self._holds: dict[str, asyncio.Event] = {}
        #: Durable events not yet sent to Redis, oldest first.
        self._outbox: list[Published] = []
        self._outbox_bytes = 0
        self._queued = 0
        self._sent = Watermark()
        self._has_news = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._connected = asyncio.Event()
        self.healthy = False
        self.problem: str | None = "not connected to Redis yet"
        self.on_lost: list[Callable[[], None]] = []
        #: Called each time the connection is made (at start, and back after a loss).
        self.on_connected: list[Callable[[], None]] = []
        self.on_fenced: list[Callable[[str], None]] = []
        #: Messages on the deployment's control channel (cancel requests, queue wake-ups) go here.
        self.control_channel = prefix + "control"
        self.on_control: Callable[[bytes], None] | None = None
        self._control = self.control_channel.encode()
        self._dropped_reported = False
        on_conflict = getattr(journal, "on_conflict", None)
        if on_conflict is not None:
            on_conflict(self._on_conflict)

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``coro`` in the background, kept and closed with the bus; what it raises is logged."""
        self._spawn(coro, name)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``coro`` in the background, keeping a reference and logging what it raises."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("redis.task_failed", task=task.get_name(), error=repr(exc), exc_info=exc)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._connect()
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="runwatch-redis-send"),
            asyncio.create_task(self._receive_loop(), name="runwatch-redis-receive"),
        ]

    async def close(self) -> None:
        for run_id in list(self._holds):
            self.fence(run_id)  # (its owner was told to stop it: see ClusterSupervisor._stop_rest)
        try:
            await asyncio.wait_for(self._sent.reached(self._queued), 3.0)
        except (TimeoutError, RedisError):
            log.warning("redis.close_unsent", events=len(self._outbox))
        for task in [*self._tasks, *self._background]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._background, return_exceptions=True)
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self._redis.aclose()
        await self._sender.aclose()
        await super().close()

    async def _connect(self) -> None:
        """Subscribe to the runs feed and the control channel, check that this Redis belongs to
        this store, learn the feed's epoch and head, and follow again what watchers follow."""
        store = self._journal.epoch  # type: ignore[union-attr]
        await self._redis.set(self._prefix + "store", store, nx=True)
        known = (await self._redis.get(self._prefix + "store") or b"").decode()
        if known != store:
            raise StoreMismatch(
                f"the Redis prefix {self._prefix!r} belongs to a deployment with another database (store epoch "
                f"{known}, this one's {store}); every instance of a deployment needs the same RUNWATCH_DATABASE_URL"
                " (or give this one its own RUNWATCH_REDIS_PREFIX)"
            )
        await self._redis.set(self._prefix + "feed:epoch", secrets.token_hex(8), nx=True)
        epoch = (await self._redis.get(self._prefix + "feed:epoch")).decode()
        head = int(await self._redis.get(self._prefix + "feed:seq") or 0)
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self._prefix + "feed:ch", self.control_channel)
        self._pubsub = pubsub
        if epoch != self.feed_epoch or head < self._feed.head:
            self._reset_feed(epoch, head)
        elif head > self._feed.head:
            await self._repair_feed(head)
        self.healthy, self.problem = True, None
        self._connected.set()
        for stream in [s for s in self._watchers if s != LIFECYCLE and s not in self._logs and s not in self._owning]:
            self._start_follow(stream)
        log.info("redis.connected", feed_epoch=epoch, feed_head=head, prefix=self._prefix)
        for callback in self.on_connected:
            try:
                callback()
            except Exception:
                log.exception("redis.on_connected_failed")

    def _reset_feed(self, epoch: str, head: int) -> None:
        self._bytes -= self._feed.size
        self.feed_epoch = epoch
        self._feed = RecentLog(self._feed_capacity, head)
        self._notify(LIFECYCLE, head)

    def _lost(self, exc: BaseException) -> None:
        was_healthy = self.healthy
        self.healthy, self.problem = False, f"Redis is unreachable: {exc}"
        self._connected.clear()
        if not was_healthy:
            return
        log.error("redis.lost", error=repr(exc))
        # Followed runs are followed again from their head once Redis is back; what a watcher
        # missed meanwhile it reads from the Stream or the store.
        for stream in list(self._follows):
            self._unfollow(stream)
        self._tell_lost()

    def _tell_lost(self) -> None:
        for callback in self.on_lost:
            try:
                callback()
            except Exception:
                log.exception("redis.on_lost_failed")

    async def _reconnect(self) -> None:
        delay = 0.1
        while True:
            await asyncio.sleep(delay)
            try:
                if self._pubsub is not None:
                    await self._pubsub.aclose()
                    self._pubsub = None
                await self._connect()
                return
            except (RedisError, OSError) as exc:
                self.problem = f"Redis is unreachable: {exc}"
                delay = min(2.0, delay * 2)
            except StoreMismatch as exc:
                self.problem = str(exc)
                log.error("redis.store_mismatch", error=str(exc))
                delay = 5.0

    # -- publishing to Redis ----------------------------------------------------------------------

    def _on_durable(self, batch: Sequence[Published]) -> None:
        """Durable: visible to this instance's watchers now, and on its way to Redis."""
        self._show(batch)
        self._outbox.extend(batch)
        self._queued += len(batch)
        self._outbox_bytes += sum(len(p.data) for p in batch)
        if len(self._outbox) > MAX_OUTBOX or self._outbox_bytes > MAX_OUTBOX_BYTES:
            self._trim_outbox()
        self._has_news.set()

    def _trim_outbox(self) -> None:
        drop = max(len(self._outbox) - MAX_OUTBOX, len(self._outbox) // 8, 1)
        dropped, self._outbox[:drop] = self._outbox[:drop], []
        self._outbox_bytes -= sum(len(p.data) for p in dropped)
        self._sent.advance(len(dropped))
        if not self._dropped_reported:
            self._dropped_reported = True
            log.error("redis.outbox_full", dropped=len(dropped), hint="followers read them from the store")

    async def _send_loop(self) -> None:
        while True:
            await self._has_news.wait()
            self._has_news.clear()
            while self._outbox:
                await self._connected.wait()
                # Taken out before the call: a trim while it is in flight drops only what waits.
                batch, self._outbox[:SCRIPT_BATCH] = self._outbox[:SCRIPT_BATCH], []
                size = sum(len(p.data) for p in batch)
                self._outbox_bytes -= size
                args: list[str | bytes | int] = [
                    self._prefix,
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
                except _CONNECTION_ERRORS as exc:
                    self._outbox[:0] = batch  # sent again once Redis is back (a position is added once)
                    self._outbox_bytes += size
                    if len(self._outbox) > MAX_OUTBOX or self._outbox_bytes > MAX_OUTBOX_BYTES:
                        self._trim_outbox()
                    if self._connected.is_set():
                        self._lost(exc)  # the receive loop reconnects
                    continue
                except RedisError as exc:  # refused (a full Redis: OOM): durable in the store, skipped here
                    log.error("redis.publish_refused", error=repr(exc), events=len(batch))
                self._sent.advance(len(batch))

    def _drop_log(self, run_id: str) -> None:
        ring = self._logs.pop(run_id, None)
        handle = self._finished.pop(run_id, None)
        if handle is not None:
            handle.cancel()
        if ring is not None:
            self._bytes -= ring.size
            self.freed += ring.size

    def _evict(self, run_id: str) -> None:
        super()._evict(run_id)
        if run_id not in self._logs:
            self._owned.discard(run_id)

    # -- reading ----------------------------------------------------------------------------------

    async def read(self, stream: str, after: int, limit: int) -> list[Published]:
        items = self.recent(stream, after, limit)
        if items is not None:
            return items
        if stream == LIFECYCLE:
            entries = await self._redis.xrange(self._prefix + "feed", min=f"{after + 1}-0", count=limit)
            if not entries or int(entries[0][0].split(b"-")[0]) != after + 1:
                raise LookupError("the runs feed no longer holds that position; reload the runs list")
            return [Published(f[b"r"].decode(), int(i.split(b"-")[0]), f[b"t"].decode(), f[b"d"]) for i, f in entries]
        return await self._read_durable(stream, after, limit)

    async def replay(self, run_id: str, after: int, limit: int) -> list[Published]:
        items = await self.read(run_id, after, limit)
        if len(items) < limit and run_id in self._follows:
            # A followed run's log here trails its owner's commits (a message in flight; an owner
            # that died before sending its last events): the store has them.
            assert self._journal is not None
            items += await self._journal.events(run_id, items[-1].seq if items else after, limit - len(items))
        return items

    async def _read_durable(self, run_id: str, after: int, limit: int) -> list[Published]:
        """Events of a run after ``after``: what its Redis Stream holds from ``after + 1`` on without
        a gap, then the store's from there. The Stream may lack a durable tail (an owner that died
        between its commit and its send; an empty Redis restart) or a middle: a read that stops
        short of ``limit`` has reached the store's head."""
        items = await self._read_stream(run_id, after, limit) if self.healthy else []
        if len(items) < limit:
            assert self._journal is not None
            items += await self._journal.events(run_id, items[-1].seq if items else after, limit - len(items))
        return items

    async def _read_stream(self, run_id: str, after: int, limit: int) -> list[Published]:
        """The run's Stream from ``after + 1`` up to its first gap, at most ``limit``; [] if Redis fails."""
        try:
            entries = await self._redis.xrange(self._prefix + "log:" + run_id, min=f"{after + 1}-0", count=limit)
        except (RedisError, OSError):
            return []
        items: list[Published] = []
        for entry_id, fields in entries:
            seq = int(entry_id.split(b"-")[0])
            if seq != after + 1 + len(items):
                break
            items.append(Published(run_id, seq, fields[b"t"].decode(), fields[b"d"]))
        return items

    async def position(self, run_id: str) -> int:
        if run_id == LIFECYCLE:
            return self._feed.visible
        return max(self.head(run_id), await self._journal.head(run_id))  # type: ignore[union-attr]


class StoreMismatch(RuntimeError):
    """The Redis prefix is in use by a deployment on another database."""
