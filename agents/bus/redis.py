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
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from runwatch.agents.bus.base import LIFECYCLE, Journal, RecentLog, Watcher
from runwatch.agents.bus.memory import MemoryBus
from runwatch.agents.events import Event, Published

log = structlog.get_logger()

#: Entries a run's Redis Stream keeps (approximately: ``MAXLEN ~``); older ones are read from the store.
STREAM_MAXLEN = 2_000
#: Events (and bytes) waiting to be sent to Redis; past either the oldest are dropped from the
#: Redis path only (they are durable in the store, where followers repairing a gap find them).
MAX_OUTBOX = 100_000
MAX_OUTBOX_BYTES = 64 * 1024 * 1024
#: Connections to Redis per instance (the subscriber's included); more callers wait their turn.
REDIS_CONNECTIONS = 32
#: Events of a run's recent history loaded into memory when this instance starts owning or
#: following it, so that watchers joining then replay it from memory rather than each from Redis.
PRELOAD = 500
#: Events one script call sends.
SCRIPT_BATCH = 500
#: Messages of a followed run held back while a gap before them is repaired; past it, the follower
#: drops them and reads everything from the gap on from the Stream or the store.
MAX_HELD = 10_000

_PUBLISH = """
local p, maxlen, feedlen, live_ttl, done_ttl, epoch = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local feed_epoch = redis.call('GET', p .. 'feed:epoch')
if not feed_epoch then
  redis.call('SET', p .. 'feed:epoch', epoch)
  feed_epoch = epoch
end
local ttl = {}
for i = 7, #ARGV, 4 do
  local run, seq, typ, data = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local key = p .. 'log:' .. run
  local added = redis.pcall('XADD', key, 'MAXLEN', '~', maxlen, seq .. '-0', 't', typ, 'd', data)
  if type(added) ~= 'table' then
    redis.call('PUBLISH', p .. 'ch:' .. run, seq .. ' ' .. typ .. ' ' .. data)
    if typ == 'run.finished' then ttl[key] = done_ttl elseif not ttl[key] then ttl[key] = live_ttl end
    if typ == 'run.queued' or typ == 'run.started' or typ == 'run.finished' then
      local pos = redis.call('INCR', p .. 'feed:seq')
      local fdata = '{"feed":' .. pos .. ',' .. string.sub(data, 2)
      redis.call('XADD', p .. 'feed', 'MAXLEN', '~', feedlen, pos .. '-0', 'r', run, 't', typ, 'd', fdata)
      redis.call('PUBLISH', p .. 'feed:ch', pos .. ' ' .. feed_epoch .. ' ' .. typ .. ' ' .. run .. ' ' .. fdata)
    end
  end
end
for key, seconds in pairs(ttl) do redis.call('EXPIRE', key, seconds) end
return feed_epoch
"""


class _Follow:
    """A run this instance follows for its local watchers but does not own."""

    __slots__ = ("held", "ready", "repairing")

    def __init__(self) -> None:
        self.ready = False
        self.repairing = False
        self.held: dict[int, Published] = {}


class RedisBus(MemoryBus):
    """See the module docstring. ``healthy`` is False while Redis is unreachable (``problem`` says
    why); ``on_lost`` callbacks run once each time the connection is lost."""

    def __init__(
        self,
        url: str,
        *,
        journal: Journal,
        prefix: str = "runwatch:",
        retain_seconds: float = 3600.0,
        live_seconds: float = 86_400.0,
        feed_capacity: int = 1_000,
        **kwargs,
    ) -> None:
        super().__init__(journal=journal, feed_capacity=feed_capacity, **kwargs)
        self._url = url
        self._prefix = prefix
        self._pre = prefix.encode()
        self._retain = int(max(1, retain_seconds))
        self._live = int(max(self._retain, live_seconds))
        self._feed_capacity = feed_capacity
        # A bounded pool whose users wait for a free connection (rather than fail) when a thousand
        # watchers read history at once; one connection stays with the subscriber.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=REDIS_CONNECTIONS, timeout=10, socket_connect_timeout=2, socket_timeout=5
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._pubsub: aioredis.client.PubSub | None = None
        self._script = self._redis.register_script(_PUBLISH)
        self._follows: dict[str, _Follow] = {}
        #: Durable events not yet sent to Redis, oldest first.
        self._outbox: list[Published] = []
        self._outbox_bytes = 0
        self._queued = 0
        self._sent = 0
        self._sent_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._has_news = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()
        self.healthy = False
        self.problem: str | None = "not connected to Redis yet"
        self.on_lost: list[Callable[[], None]] = []
        #: Messages on the deployment's control channel (cancel requests, queue wake-ups) go here.
        self.control_channel = prefix + "control"
        self.on_control: Callable[[bytes], None] | None = None
        self._control = self.control_channel.encode()
        self._dropped_reported = False

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

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
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self._redis.aclose()
        await super().close()

    async def _connect(self) -> None:
        """Subscribe to the runs feed, learn its epoch and head, and follow again what watchers follow."""
        candidate = secrets.token_hex(8)
        await self._redis.set(self._prefix + "feed:epoch", candidate, nx=True)
        epoch = (await self._redis.get(self._prefix + "feed:epoch")).decode()
        head = int(await self._redis.get(self._prefix + "feed:seq") or 0)
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self._prefix + "feed:ch", self.control_channel)
        self._pubsub = pubsub
        if epoch != self.feed_epoch or head < self._feed.head:
            self._reset_feed(epoch, head)
        elif head > self._feed.head:
            await self._repair_feed(head)
        for stream in [s for s in self._watchers if s != LIFECYCLE and s not in self._logs]:
            await self._follow(stream)
        self.healthy, self.problem = True, None
        self._connected.set()
        log.info("redis.connected", feed_epoch=epoch, feed_head=head)
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

    # -- publishing -----------------------------------------------------------------------------

    def _on_durable(self, batch: Sequence[Published]) -> None:
        """Durable: visible to this instance's watchers now, and on its way to Redis."""
        self._show(batch)
        self._outbox.extend(batch)
        self._queued += len(batch)
        self._outbox_bytes += sum(len(p.data) for p in batch)
        if len(self._outbox) > MAX_OUTBOX or self._outbox_bytes > MAX_OUTBOX_BYTES:
            drop = max(len(self._outbox) - MAX_OUTBOX, len(self._outbox) // 8)
            dropped, self._outbox[:drop] = self._outbox[:drop], []
            self._outbox_bytes -= sum(len(p.data) for p in dropped)
            self._count_sent(len(dropped))
            if not self._dropped_reported:
                self._dropped_reported = True
                log.error("redis.outbox_full", dropped=len(dropped), hint="followers read them from the store")
        self._has_news.set()

    async def _send_loop(self) -> None:
        while True:
            await self._has_news.wait()
            self._has_news.clear()
            while self._outbox:
                await self._connected.wait()
                batch = self._outbox[:SCRIPT_BATCH]
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
                except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                    if self._connected.is_set():
                        self._lost(exc)  # the receive loop reconnects
                    continue
                except RedisError as exc:  # refused (a full Redis: OOM): durable in the store, skipped here
                    log.error("redis.publish_refused", error=repr(exc), events=len(batch))
                del self._outbox[: len(batch)]
                self._outbox_bytes -= sum(len(p.data) for p in batch)
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

    async def release(self, run_id: str) -> None:
        """Stop owning ``run_id`` (another instance will publish its next events): once what it
        published is durable and in Redis, keep following it from Redis if anyone here watches it."""
        await self._journal_flush()
        await self._wait_sent(self._queued)
        ring = self._logs.get(run_id)
        if ring is None:
            return
        if run_id in self._watchers:
            follow = self._follows[run_id] = _Follow()
            follow.ready = True
            await self._subscribe(run_id)
            # Anything published by the next owner before the subscription took effect is repaired.
            await self._catch_up(run_id)
        else:
            self._drop_log(run_id)

    async def _journal_flush(self) -> None:
        flush = getattr(self._journal, "flush", None)
        if flush is not None:
            await flush()

    async def publish(self, event: Event) -> Published:
        if event.run_id in self._follows:
            await self._take_over(event.run_id)
        return await super().publish(event)

    async def _take_over(self, run_id: str) -> None:
        """Start owning a run followed until now: its log continues from the store's head."""
        async with self._opening:
            if run_id not in self._follows:
                return
            self._unfollow(run_id, keep_log=True)
            ring = self._logs.get(run_id)
            if ring is None:
                return
            head = await self._journal.head(run_id)  # type: ignore[union-attr]
            while ring.head < head:
                items = await self._read_durable(run_id, ring.head, head - ring.head)
                if not items:
                    break
                self._append_all(run_id, items)
            if ring.head != head:
                self._drop_log(run_id)  # ``MemoryBus._open_log`` opens it afresh at the store's head

    async def _open_log(self, run_id: str, *, new: bool) -> RecentLog:
        """A run this instance starts owning: its log continues from the store's head, with its
        recent history in memory."""
        if new:
            return await super()._open_log(run_id, new=True)
        async with self._opening:
            ring = self._logs.get(run_id)
            if ring is None:
                head = await self._journal.head(run_id)  # type: ignore[union-attr]
                ring = await self._ring_ending_at(run_id, head)
                self._install(run_id, ring)
            return ring

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

    # -- following runs owned elsewhere -----------------------------------------------------------

    def watch(self, stream: str, watcher: Watcher) -> None:
        super().watch(stream, watcher)
        if stream != LIFECYCLE and stream not in self._logs and stream not in self._follows and self.healthy:
            self._follows[stream] = _Follow()
            asyncio.get_running_loop().create_task(self._follow(stream))

    def unwatch(self, stream: str, watcher: Watcher) -> None:
        super().unwatch(stream, watcher)
        if stream not in self._watchers and stream in self._follows:
            self._unfollow(stream)

    async def _follow(self, stream: str) -> None:
        self._follows.setdefault(stream, _Follow())
        try:
            await self._subscribe(stream)
            head = await self._remote_head(stream)
        except (RedisError, OSError) as exc:
            log.warning("redis.follow_failed", run_id=stream, error=repr(exc))
            self._follows.pop(stream, None)
            return
        follow = self._follows.get(stream)
        if follow is None:
            return  # unwatched meanwhile
        if stream not in self._logs:
            try:
                ring = await self._ring_ending_at(stream, head)
            except (RedisError, OSError) as exc:
                log.warning("redis.follow_failed", run_id=stream, error=repr(exc))
                self._follows.pop(stream, None)
                return
            if self._follows.get(stream) is not follow:
                return  # unwatched, or taken over, meanwhile
            if stream not in self._logs:
                self._install(stream, ring)
        follow.ready = True
        for seq in sorted(follow.held):
            self._apply(stream, follow.held.pop(seq))
        if visible := self._logs[stream].visible:
            self._notify(stream, visible)

    async def _subscribe(self, stream: str) -> None:
        if self._pubsub is not None:
            await self._pubsub.subscribe(self._prefix + "ch:" + stream)

    def _unfollow(self, stream: str, *, keep_log: bool = False) -> None:
        self._follows.pop(stream, None)
        if self._pubsub is not None and self.healthy:
            asyncio.get_running_loop().create_task(self._unsubscribe(stream))
        if not keep_log:
            self._drop_log(stream)

    async def _unsubscribe(self, stream: str) -> None:
        try:
            if self._pubsub is not None:
                await self._pubsub.unsubscribe(self._prefix + "ch:" + stream)
        except (RedisError, OSError):
            pass

    def _drop_log(self, run_id: str) -> None:
        ring = self._logs.pop(run_id, None)
        handle = self._finished.pop(run_id, None)
        if handle is not None:
            handle.cancel()
        if ring is not None:
            self._bytes -= ring.size
            self.freed += ring.size

    async def _remote_head(self, run_id: str) -> int:
        last = await self._redis.xrevrange(self._prefix + "log:" + run_id, count=1)
        stream_head = int(last[0][0].split(b"-")[0]) if last else 0
        return max(stream_head, await self._journal.head(run_id))

    async def _receive_loop(self) -> None:
        while True:
            pubsub = self._pubsub
            if pubsub is None:
                await self._reconnect()
                continue
            try:
                if not self._connected.is_set():
                    raise ConnectionError("the publishing connection failed")
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
            if len(follow.held) < MAX_HELD:
                follow.held[published.seq] = published
            return
        self._apply(run_id, published)

    def _apply(self, run_id: str, published: Published) -> None:
        ring = self._logs.get(run_id)
        follow = self._follows.get(run_id)
        if ring is None or follow is None:
            return
        if published.seq <= ring.head:
            return  # a duplicate
        if published.seq > ring.head + 1:
            follow.held[published.seq] = published
            if not follow.repairing:
                follow.repairing = True
                asyncio.get_running_loop().create_task(self._repair(run_id))
            return
        self._append_all(run_id, [published])

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
        finally:
            follow = self._follows.get(run_id)
            if follow is not None:
                follow.repairing = False
                ring = self._logs.get(run_id)
                for seq in sorted(follow.held):
                    p = follow.held.pop(seq)
                    if ring is not None and p.seq == ring.head + 1:
                        self._append_all(run_id, [p])

    async def _catch_up(self, run_id: str) -> None:
        while True:
            ring = self._logs.get(run_id)
            follow = self._follows.get(run_id)
            if ring is None or follow is None:
                return
            wanted = min(follow.held) - 1 if follow.held else None
            limit = 500 if wanted is None else min(500, wanted - ring.head)
            if limit <= 0:
                return
            items = await self._read_durable(run_id, ring.head, limit)
            if not items:
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
            asyncio.get_running_loop().create_task(self._repair_feed(position))
            return
        self._grow(feed.append(Published(run_id.decode(), position, type_.decode(), body)))
        feed.visible = feed.head
        self._notify(LIFECYCLE, feed.head)

    async def _repair_feed(self, upto: int) -> None:
        feed = self._feed
        entries = await self._redis.xrange(self._prefix + "feed", min=f"{feed.head + 1}-0", max=f"{upto}-0")
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
