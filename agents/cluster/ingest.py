"""What the instances of a cluster share about external runs, in Redis (``agents/ingest/shared.py``
states the contracts).

- ``RedisSharing.exclusive``: a lock per run (redis-py's ``Lock``: ``SET NX PX`` with a token,
  extended while held, freed by a script that checks the token), under which this instance owns
  the run's positions — taken with ``Ownership.unfence`` and handed back with ``release``, which
  returns once what it published is durable and in Redis. A lock outlives a holder that stopped
  (died, or its loop stalled) by at most ``LOCK_SECONDS``. A holder that cannot extend its lock
  fences the run at once (its further publishes are refused), and a holder fenced meanwhile (the
  store refused one of its positions: another instance wrote there) leaves with ``Unavailable``:
  its client retries, and its copy of the run is rebuilt from the store.
- ``RedisSharing.changed``: ``RunChanged`` on the deployment's control channel.
- ``RedisLeases``: each run's lease length (a hash) and deadline (a sorted set, on Redis's clock:
  every deadline is set and read by the scripts below with ``TIME``), what its agent took (a hash),
  and the agents heard from (a sorted set by time, the newest ``MAX_AGENTS_SEEN`` kept).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import LockError, RedisError

from runwatch.agents.bus.base import Ownership
from runwatch.agents.cluster.channel import RunChanged, encode
from runwatch.agents.errors import Unavailable
from runwatch.agents.ingest.shared import MAX_AGENTS_SEEN

log = structlog.get_logger()

#: The longest a run's lock outlives an instance that stopped extending it, in seconds; a holder
#: extends it every third of that.
LOCK_SECONDS = 10.0
#: The longest a request waits for a run another instance holds, in seconds (then 503).
LOCK_WAIT = 5.0
#: How often a waiting request looks at the lock again, in seconds.
LOCK_SLEEP = 0.005
#: Runs ``due`` returns at a time.
DUE_AT_ONCE = 100
#: How often one instance tells Redis the same agent was heard from, at most, in seconds.
SEEN_EVERY = 1.0

#: Every script's first line: Redis's clock, in seconds.
_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1e6\n"
#: Start a run's lease: KEYS lengths, deadlines; ARGV run, seconds, "1" to keep a lease it has.
_START = (
    _NOW
    + """
if ARGV[3] == '1' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)
#: Renew a run's lease with its length: KEYS lengths, deadlines; ARGV run. Returns the length
#: (nil: the run has no lease).
_RENEW = (
    _NOW
    + """
local seconds = redis.call('HGET', KEYS[1], ARGV[1])
if not seconds then return false end
redis.call('ZADD', KEYS[2], now + tonumber(seconds), ARGV[1])
return seconds
"""
)
#: KEYS deadlines; ARGV at most. The runs past their deadline.
_DUE = _NOW + "return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))"
#: KEYS deadlines; ARGV run. 1 if its deadline passed.
_EXPIRED = (
    _NOW
    + """
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if deadline and tonumber(deadline) <= now then return 1 end
return 0
"""
)
#: KEYS deadlines. Seconds until the earliest deadline (a string), or nil.
_UNTIL_NEXT = (
    _NOW
    + """
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then return false end
return tostring(math.max(0, tonumber(first[2]) - now))
"""
)
#: KEYS acked, lengths; ARGV run, c. The highest c its agent took (only for a run with a lease).
_ACK = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
local taken = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > taken then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"""


def _unreachable(exc: BaseException) -> Unavailable:
    return Unavailable(f"Redis is unreachable ({exc.__class__.__name__}); try again in a moment")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisSharing:
    fresh = False

    def __init__(self, redis: aioredis.Redis, ownership: Ownership, *, prefix: str, control: str) -> None:
        self._redis = redis
        self._ownership = ownership
        self._prefix = prefix
        self._control = control

    def exclusive(self, run_id: str) -> AbstractAsyncContextManager[None]:
        return self._held(run_id)

    @asynccontextmanager
    async def _held(self, run_id: str) -> AsyncIterator[None]:
        lock = self._redis.lock(
            f"{self._prefix}ingest:lock:{run_id}",
            timeout=LOCK_SECONDS,
            sleep=LOCK_SLEEP,
            blocking_timeout=LOCK_WAIT,
            thread_local=False,
        )
        try:
            acquired = await lock.acquire()
        except RedisError as exc:
            raise _unreachable(exc) from None
        if not acquired:
            raise Unavailable(f"run {run_id} is busy on another instance; try again in a moment")
        self._ownership.unfence(run_id)
        lost = asyncio.Event()
        keeping = asyncio.create_task(self._keep(run_id, lock, lost), name=f"ingest-hold-{run_id}")
        try:
            yield
        finally:
            keeping.cancel()
            await self._let_go(run_id, lock, lost.is_set())
        if lost.is_set() or self._ownership.fenced(run_id):
            raise Unavailable(f"run {run_id} was taken by another instance meanwhile; try again")

    async def _keep(self, run_id: str, lock: aioredis.lock.Lock, lost: asyncio.Event) -> None:
        """Extend the lock while it is held; if it cannot be, stop publishing to the run now."""
        while True:
            await asyncio.sleep(LOCK_SECONDS / 3)
            try:
                await lock.extend(LOCK_SECONDS, replace_ttl=True)
            except (LockError, RedisError) as exc:
                log.warning("ingest.hold_lost", run_id=run_id, error=repr(exc))
                lost.set()
                self._ownership.fence(run_id)
                return

    async def _let_go(self, run_id: str, lock: aioredis.lock.Lock, lost: bool) -> None:
        """Hand the run's positions back once they are durable and in Redis, then free its lock.
        If they cannot be (Redis away), this instance may not publish to the run again until it
        holds it again, and the lock frees itself (``LOCK_SECONDS``): nobody takes the run sooner."""
        try:
            await self._ownership.release(run_id)
        except TimeoutError:
            self._ownership.fence(run_id)
            log.warning("ingest.release_timed_out", run_id=run_id)
            return
        if lost:
            return
        try:
            await lock.release()
        except (LockError, RedisError) as exc:  # (it ran out: nobody waited, or Redis is away)
            log.warning("ingest.lock_not_released", run_id=run_id, error=repr(exc))

    async def changed(self, run_id: str) -> None:
        try:
            await self._redis.publish(self._control, encode(RunChanged(run=run_id)))
        except RedisError as exc:  # (the polls answer at their time, with the control)
            log.warning("ingest.change_not_told", run_id=run_id, error=repr(exc))


class RedisLeases:
    look_every = 1.0

    def __init__(self, redis: aioredis.Redis, *, prefix: str) -> None:
        self._redis = redis
        self._lengths = f"{prefix}ingest:lease_seconds"
        self._deadlines = f"{prefix}ingest:deadlines"
        self._acked = f"{prefix}ingest:acked"
        self._seen = f"{prefix}ingest:seen"
        self._start = redis.register_script(_START)
        self._renew = redis.register_script(_RENEW)
        self._due = redis.register_script(_DUE)
        self._expired = redis.register_script(_EXPIRED)
        self._until_next = redis.register_script(_UNTIL_NEXT)
        self._ack = redis.register_script(_ACK)
        self.changed = asyncio.Event()
        #: When this instance last told Redis of each agent (``SEEN_EVERY``), at most ``MAX_AGENTS_SEEN``.
        self._told: dict[str, float] = {}

    async def start(self, run_id: str, seconds: float) -> None:
        await self._call(self._start, [self._lengths, self._deadlines], [run_id, repr(seconds), "0"])
        self.changed.set()

    async def ensure(self, run_id: str, seconds: float) -> None:
        if await self._call(self._start, [self._lengths, self._deadlines], [run_id, repr(seconds), "1"]):
            self.changed.set()

    async def renew(self, run_id: str) -> float | None:
        seconds = await self._call(self._renew, [self._lengths, self._deadlines], [run_id])
        return float(seconds) if seconds is not None else None

    async def end(self, run_id: str) -> None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self._deadlines, run_id)
                pipe.hdel(self._lengths, run_id)
                pipe.hdel(self._acked, run_id)
                await pipe.execute()
        except RedisError as exc:
            raise _unreachable(exc) from None

    async def due(self) -> list[str]:
        return [_text(x) for x in await self._call(self._due, [self._deadlines], [DUE_AT_ONCE])]

    async def expired(self, run_id: str) -> bool:
        return bool(await self._call(self._expired, [self._deadlines], [run_id]))

    async def until_next(self) -> float | None:
        left = await self._call(self._until_next, [self._deadlines], [])
        return float(left) if left is not None else None

    async def ack(self, run_id: str, c: int) -> None:
        await self._call(self._ack, [self._acked, self._lengths], [run_id, c])

    async def acked(self, run_id: str) -> int:
        try:
            taken = await self._redis.hget(self._acked, run_id)
        except RedisError as exc:
            raise _unreachable(exc) from None
        return int(taken) if taken is not None else 0

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except RedisError as exc:
            raise _unreachable(exc) from None

    async def seen(self, tenant: str, agent: str) -> None:
        key, now = f"{tenant}\x00{agent}", time.time()
        if now - self._told.get(key, 0.0) < SEEN_EVERY:
            return
        self._told.pop(key, None)
        self._told[key] = now
        if len(self._told) > MAX_AGENTS_SEEN:
            del self._told[next(iter(self._told))]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zadd(self._seen, {key: now})
                pipe.zremrangebyrank(self._seen, 0, -MAX_AGENTS_SEEN - 1)
                await pipe.execute()
        except RedisError as exc:  # (a view, best effort: the lease was renewed)
            log.warning("ingest.seen_not_told", error=repr(exc))

    async def last_seen(self, tenant: str | None) -> dict[str, float]:
        try:
            members = await self._redis.zrange(self._seen, 0, -1, withscores=True)
        except RedisError as exc:
            raise _unreachable(exc) from None
        seen: dict[str, float] = {}
        for member, score in members:
            t, _, agent = _text(member).partition("\x00")
            if tenant is None or t == tenant:
                seen[agent] = float(score)
        return seen
