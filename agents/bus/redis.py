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

from runwatch.agents.bus.base import LIFECYCLE, Fenced, Journal, RecentLog, Watcher
from runwatch.agents.bus.memory import MemoryBus
from runwatch.agents.bus.redis_scripts import PUBLISH
from runwatch.agents.events import Event, Published

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
#: Events of a run's recent history loaded into memory when this instance starts owning or
#: following it, so that watchers joining then replay it from memory rather than each from Redis.
PRELOAD = 500
#: Events one script call sends.
SCRIPT_BATCH = 500
#: Messages of a followed run held back while a gap before them is repaired; past it, the follower
#: drops them and reads everything from the gap on from the Stream or the store.
MAX_HELD = 10_000
#: A run that could not be followed (Redis or the store failing) is tried again after this.
FOLLOW_RETRY_SECONDS = 1.0
#: How long ``release`` may wait for a run's events to be durable and in Redis.
RELEASE_TIMEOUT = 10.0

_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class _Follow:
    """A run this instance follows for its local watchers but does not own."""

    __slots__ = ("held", "overflowed", "ready", "repairing")

    def __init__(self) -> None:
        self.ready = False
        self.repairing = False
        self.overflowed = False
        self.held: dict[int, Published] = {}


class RedisBus(MemoryBus):
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
        self._follows: dict[str, _Follow] = {}
        #: Runs whose positions this instance assigns; ``_owning``: being opened to be owned.
        self._owned: set[str] = set()
        self._owning: set[str] = set()
        self._fenced: set[str] = set()
        #: Durable events not yet sent to Redis, oldest first.
        self._outbox: list[Published] = []
        self._outbox_bytes = 0
        self._queued = 0
        self._sent = 0
        self._sent_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._has_news = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._connected = asyncio.Event()
        self.healthy = False
        self.problem: str | None = "not connected to Redis yet"
        self.on_lost: list[Callable[[], None]] = []
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
        try:
            await asyncio.wait_for(self._wait_sent(self._queued), 5.0)
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
        for stream in [s for s in self._watchers if s != LIFECYCLE and s not in self._logs]:
            self._start_follow(stream)
        log.info("redis.connected", feed_epoch=epoch, feed_head=head, prefix=self._prefix)
        if self.on_control is not None:
            self.on_control(b"queued")  # jobs queued while we were away

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

    # -- publishing and ownership -----------------------------------------------------------------

    async def publish(self, event: Event) -> Published:
        run_id = event.run_id
        if run_id in self._fenced:
            raise Fenced(f"this instance no longer owns run {run_id}")
        if run_id in self._follows and run_id not in self._owned:
            await self._take_over(run_id)
        return await super().publish(event)

    async def _open_log(self, run_id: str, *, new: bool) -> RecentLog:
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

    async def _take_over(self, run_id: str) -> None:
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

    def _install(self, run_id: str, ring: RecentLog) -> None:
        self._logs[run_id] = ring
        self._grow(ring.size)

    async def _ring_ending_at(self, run_id: str, head: int) -> RecentLog:
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

    async def sent(self) -> None:
        """Return once everything published so far is durable and in Redis."""
        await self._journal_flush()
        await self._wait_sent(self._queued)

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
        if run_id not in self._logs:
            return
        if run_id in self._watchers and self.healthy:
            follow = self._follows[run_id] = _Follow()
            follow.ready = True
            self._spawn(self._refollow(run_id), f"refollow-{run_id}")
        else:
            self._drop_log(run_id)

    async def _refollow(self, run_id: str) -> None:
        await self._subscribe(run_id)
        await self._catch_up(run_id)  # what the next owner published before the subscription took effect

    def fence(self, run_id: str) -> None:
        """Refuse further publishes to ``run_id`` from this instance (``Fenced``) until ``unfence``;
        its producers waiting in ``settled`` are released, and its log here is disowned."""
        self._fenced.add(run_id)
        for _, future in self._settling.pop(run_id, []):
            if not future.done():
                future.set_result(None)
        ring = self._logs.get(run_id)
        if ring is not None and ring.visible < ring.head:
            self._drop_log(run_id)  # holds positions the store refused or may refuse: not ours to show
        self.disown(run_id)

    def unfence(self, run_id: str) -> None:
        self._fenced.discard(run_id)

    def _on_conflict(self, run_id: str) -> None:
        """The store holds other events at positions this instance gave out: another instance
        owns the run. Stop publishing it; the supervisor stops executing it."""
        log.error("run.position_conflict", run_id=run_id, hint="another instance owns this run now")
        self.fence(run_id)
        for callback in self.on_fenced:
            try:
                callback(run_id)
            except Exception:
                log.exception("redis.on_fenced_failed")

    async def _journal_flush(self) -> None:
        flush = getattr(self._journal, "flush", None)
        if flush is not None:
            await flush()

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
        self._count_sent(len(dropped))
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
                self._count_sent(len(batch))

    def _count_sent(self, n: int) -> None:
        self._sent += n
        if self._sent_waiters:
            still = []
            for target, future in self._sent_waiters:
                if target <= self._sent:
                    if not future.done():
                        future.set_result(None)
                else:
                    still.append((target, future))
            self._sent_waiters = still

    async def _wait_sent(self, target: int) -> None:
        if self._sent >= target:
            return
        future = asyncio.get_running_loop().create_future()
        self._sent_waiters.append((target, future))
        await future

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

    # -- following runs owned elsewhere -----------------------------------------------------------

    def watch(self, stream: str, watcher: Watcher) -> None:
        super().watch(stream, watcher)
        if stream != LIFECYCLE and stream not in self._logs and stream not in self._owning:
            self._start_follow(stream)

    def unwatch(self, stream: str, watcher: Watcher) -> None:
        super().unwatch(stream, watcher)
        if stream not in self._watchers and stream in self._follows:
            self._unfollow(stream)

    def _start_follow(self, stream: str) -> None:
        if stream in self._follows or not self.healthy:
            return
        self._follows[stream] = _Follow()
        self._spawn(self._follow(stream), f"follow-{stream}")

    async def _follow(self, stream: str) -> None:
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

    def _retry_follow(self, stream: str) -> None:
        if stream in self._watchers and stream not in self._logs:
            self._start_follow(stream)

    async def _subscribe(self, stream: str) -> None:
        if self._pubsub is not None:
            await self._pubsub.subscribe(self._prefix + "ch:" + stream)

    def _unfollow(self, stream: str, *, keep_log: bool = False) -> None:
        self._follows.pop(stream, None)
        if self._pubsub is not None and self.healthy:
            self._spawn(self._unsubscribe(stream), f"unsubscribe-{stream}")
        if not keep_log:
            self._drop_log(stream)

    async def _unsubscribe(self, stream: str) -> None:
        try:
            if self._pubsub is not None:
                await self._pubsub.unsubscribe(self._prefix + "ch:" + stream)
        except (RedisError, OSError):
            pass

    async def _remote_head(self, run_id: str) -> int:
        last = await self._redis.xrevrange(self._prefix + "log:" + run_id, count=1)
        stream_head = int(last[0][0].split(b"-")[0]) if last else 0
        return max(stream_head, await self._journal.head(run_id))  # type: ignore[union-attr]

    async def _receive_loop(self) -> None:
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

    def _on_run(self, run_id: str, data: bytes) -> None:
        follow = self._follows.get(run_id)
        if follow is None:
            return  # owned here (our own message coming back) or no longer followed
        seq_text, type_, body = data.split(b" ", 2)
        published = Published(run_id, int(seq_text), type_.decode(), body)
        if not follow.ready or follow.repairing:
            self._hold(run_id, follow, published)
            return
        self._apply(run_id, published)

    def _hold(self, run_id: str, follow: _Follow, published: Published) -> None:
        if len(follow.held) < MAX_HELD:
            follow.held[published.seq] = published
        elif not follow.overflowed:
            follow.overflowed = True  # the repair reads on to the run's head instead
            log.warning("redis.follow_overflow", run_id=run_id, held=len(follow.held))

    def _apply(self, run_id: str, published: Published) -> None:
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

    def _apply_held(self, run_id: str) -> None:
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

    def _append_all(self, run_id: str, items: Sequence[Published]) -> None:
        ring = self._logs[run_id]
        for p in items:
            if p.seq == ring.head + 1:
                self._grow(ring.append(p))
                ring.visible = ring.head
                if p.type == "run.finished":
                    self._retire(run_id)
        self._notify(run_id, ring.visible)

    async def _repair(self, run_id: str) -> None:
        """Fill the gap before the held messages from the Stream or the store, then apply them."""
        try:
            await self._catch_up(run_id)
        except Exception as exc:  # Redis or the store failing: the next message past a gap tries again
            log.warning("redis.repair_failed", run_id=run_id, error=repr(exc))
        follow = self._follows.get(run_id)
        if follow is None:
            return
        follow.repairing = False
        follow.overflowed = False
        ring = self._logs.get(run_id)
        if ring is not None:
            for seq in [s for s in follow.held if s <= ring.head]:
                del follow.held[seq]
        if follow.held and ring is not None and min(follow.held) == ring.head + 1:
            self._apply_held(run_id)

    async def _catch_up(self, run_id: str) -> None:
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

    def _on_feed(self, data: bytes) -> None:
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

    async def _repair_feed(self, upto: int) -> None:
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

    async def _read_durable(self, run_id: str, after: int, limit: int) -> list[Published]:
        """Events of a run after ``after``: from its Redis Stream when that holds ``after + 1``, else the store."""
        if self.healthy:
            try:
                entries = await self._redis.xrange(self._prefix + "log:" + run_id, min=f"{after + 1}-0", count=limit)
            except (RedisError, OSError):
                entries = []
            items = []
            for entry_id, fields in entries:
                seq = int(entry_id.split(b"-")[0])
                if seq != after + 1 + len(items):
                    break
                items.append(Published(run_id, seq, fields[b"t"].decode(), fields[b"d"]))
            if items:
                return items
        assert self._journal is not None
        return await self._journal.events(run_id, after, limit)

    async def position(self, run_id: str) -> int:
        if run_id == LIFECYCLE:
            return self._feed.visible
        return max(self.head(run_id), await self._journal.head(run_id))  # type: ignore[union-attr]


class StoreMismatch(RuntimeError):
    """The Redis prefix is in use by a deployment on another database."""
