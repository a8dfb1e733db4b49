"""What the instances of a cluster share about external runs, in Redis (``agents/ingest/shared.py``
states the contracts).

- ``RedisSharing.exclusive``: a short lock per run (redis-py's ``Lock``: ``SET NX PX`` with a
  token, freed by a script that checks it), under which this instance owns the run's positions —
  taken with ``Ownership.unfence`` and handed back with ``release``, which returns once what it
  published is durable and in Redis. A lock outlives its holder by at most ``LOCK_SECONDS``; a
  holder that stalled past it is fenced by the store (its positions are refused) like any owner.
- ``RedisSharing.changed``: ``RunChanged`` on the deployment's control channel.
- ``RedisLeases``: each run's lease length (a hash) and deadline (a sorted set), and the agents
  heard from (a sorted set by time, the newest ``MAX_AGENTS_SEEN`` kept).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import redis.asyncio as aioredis
import structlog
from redis.exceptions import LockError, RedisError

from runwatch.agents.bus.base import Ownership
from runwatch.agents.cluster.channel import RunChanged, encode
from runwatch.agents.errors import Unavailable
from runwatch.agents.ingest.shared import MAX_AGENTS_SEEN

log = structlog.get_logger()

#: The longest a run's lock outlives an instance that stopped holding it, in seconds.
LOCK_SECONDS = 10.0
#: The longest a request waits for a run another instance holds, in seconds (then 503).
LOCK_WAIT = 5.0
#: How often a waiting request looks at the lock again, in seconds.
LOCK_SLEEP = 0.005
#: Runs ``due`` returns at a time.
DUE_AT_ONCE = 100
#: How often one instance tells Redis the same agent was heard from, at most, in seconds.
SEEN_EVERY = 1.0

#: Renew a run's lease with its length: KEYS lengths, deadlines; ARGV run, now. Returns the length
#: (nil: the run has no lease).
_RENEW = """
local seconds = redis.call('HGET', KEYS[1], ARGV[1])
if not seconds then return false end
redis.call('ZADD', KEYS[2], tonumber(ARGV[2]) + tonumber(seconds), ARGV[1])
return seconds
"""


def _unreachable(exc: BaseException) -> Unavailable:
    return Unavailable(f"Redis is unreachable ({exc.__class__.__name__}); try again in a moment")


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
        try:
            yield
        finally:
            await self._let_go(run_id, lock)

    async def _let_go(self, run_id: str, lock: aioredis.lock.Lock) -> None:
        """Hand the run's positions back once they are durable and in Redis, then free its lock.
        If they cannot be (Redis away), this instance may not publish to the run again until it
        holds it again, and the lock frees itself (``LOCK_SECONDS``): nobody takes the run sooner."""
        try:
            await self._ownership.release(run_id)
        except TimeoutError:
            self._ownership.fence(run_id)
            log.warning("ingest.release_timed_out", run_id=run_id)
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
        self._seen = f"{prefix}ingest:seen"
        self._renew = redis.register_script(_RENEW)
        self.changed = asyncio.Event()
        #: When this instance last told Redis of each agent (``SEEN_EVERY``), at most ``MAX_AGENTS_SEEN``.
        self._told: dict[str, float] = {}

    async def start(self, run_id: str, seconds: float) -> None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._lengths, run_id, repr(seconds))
                pipe.zadd(self._deadlines, {run_id: time.time() + seconds})
                await pipe.execute()
        except RedisError as exc:
            raise _unreachable(exc) from None
        self.changed.set()

    async def renew(self, run_id: str) -> float | None:
        try:
            seconds = await self._renew(keys=[self._lengths, self._deadlines], args=[run_id, repr(time.time())])
        except RedisError as exc:
            raise _unreachable(exc) from None
        return float(seconds) if seconds is not None else None

    async def end(self, run_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._deadlines, run_id)
            pipe.hdel(self._lengths, run_id)
            await pipe.execute()

    async def due(self, now: float) -> list[str]:
        found = await self._redis.zrangebyscore(self._deadlines, "-inf", now, start=0, num=DUE_AT_ONCE)
        return [x.decode() if isinstance(x, bytes) else x for x in found]

    async def deadline(self, run_id: str) -> float | None:
        score = await self._redis.zscore(self._deadlines, run_id)
        return float(score) if score is not None else None

    async def next_deadline(self) -> float | None:
        first = await self._redis.zrange(self._deadlines, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

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
        seen: dict[str, float] = {}
        for member, score in await self._redis.zrange(self._seen, 0, -1, withscores=True):
            t, _, agent = (member.decode() if isinstance(member, bytes) else member).partition("\x00")
            if tenant is None or t == tenant:
                seen[agent] = float(score)
        return seen
