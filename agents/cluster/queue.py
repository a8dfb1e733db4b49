"""The shared run queue and run leases, in Redis: each step one Lua script, so atomic.

Keys (under the deployment's prefix): ``queue`` (sorted set of run ids, oldest first), ``jobs``
(hash: run id → the job), ``leases`` (sorted set: run id → lease expiry in Redis-clock ms),
``owners`` (hash: run id → instance). Taking a job moves it from the queue to a lease in the same
step, so a run is never both queued and owned, never owned twice, and never lost between the two.
"""

from __future__ import annotations

import time

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from runwatch.agents.cluster.channel import QUEUED, CancelRun, ControlMessage, encode
from runwatch.agents.identity import Actor
from runwatch.agents.store import RunSummary
from runwatch.agents.store.aggregates import InstanceLoad

#: What a lost or failing Redis raises.
REDIS_ERRORS = (RedisError, OSError)

_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "

_TAKE = (
    _NOW
    + """
while true do
  local popped = redis.call('ZPOPMIN', KEYS[1])
  if #popped == 0 then return false end
  local run = popped[1]
  local job = redis.call('HGET', KEYS[2], run)
  if job then
    redis.call('HDEL', KEYS[2], run)
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), run)
    redis.call('HSET', KEYS[4], run, ARGV[1])
    local cancelled = redis.call('EXISTS', ARGV[3] .. run)
    return {job, cancelled}
  end
end
"""
)

_CANCEL = (
    _NOW
    + """
-- Still queued: out of the queue and leased to the caller, who ends it.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[6], now + tonumber(ARGV[4]), ARGV[1])
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
  return 'removed'
end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 'owned' end
-- Being admitted: whoever takes its job cancels it at once.
if redis.call('EXISTS', KEYS[4] .. ARGV[1]) == 1 then
  redis.call('SET', KEYS[5] .. ARGV[1], '1', 'EX', ARGV[2])
  return 'admitting'
end
return 'none'
"""
)

_RENEW = (
    _NOW
    + """
local lost = {}
for i = 3, #ARGV do
  local owner = redis.call('HGET', KEYS[2], ARGV[i])
  -- Ours, or forgotten by a Redis that restarted (then ours again: other instances wait a whole
  -- lease after reconnecting before they claim anything, and this renewal comes first) -- but
  -- not one released by whoever held it last (the marker says so, for a few leases).
  if owner == ARGV[1] or (not owner and redis.call('EXISTS', KEYS[3] .. ARGV[i]) == 0) then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[1])
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[i])
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
"""
)

_CLAIM = (
    _NOW
    + """
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[2])
if expiry and tonumber(expiry) > now then return 0 end
if not expiry and redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return 1
"""
)

_EXPIRED = _NOW + "return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)"

_RELEASE = """
if redis.call('HGET', KEYS[2], ARGV[2]) ~= ARGV[1] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3] .. ARGV[2], ARGV[1], 'PX', tonumber(ARGV[3]) * 4)
return 1
"""


_REQUEUE = """
if redis.call('HGET', KEYS[2], ARGV[2]) ~= ARGV[1] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3] .. ARGV[2], ARGV[1], 'PX', tonumber(ARGV[3]) * 4)
redis.call('HSET', KEYS[5], ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[6]), ARGV[2])
redis.call('PUBLISH', KEYS[7], ARGV[5])
return 1
"""


class Job(msgspec.Struct, kw_only=True):
    """A run waiting for an instance: everything needed to execute it. ``resume``: it ran before
    (handed over at a drain) and continues from its stored events."""

    run_id: str
    agent: str
    input: str
    model: str
    tenant: str = "default"
    resume: bool = False
    #: When it was queued (epoch seconds): the run's ``queue_wait``.
    queued_at: float = 0.0
    #: Its thread (empty: a thread of its own, named by the run's id).
    thread: str = ""


def resume_job(run_id: str, agent: str, model: str, summary: RunSummary | None) -> Job:
    """The job that continues a run from its stored events, on whichever instance takes it."""
    return Job(
        run_id=run_id,
        agent=agent,
        input=summary.input if summary is not None else "",
        model=model,
        tenant=summary.tenant if summary is not None else "default",
        resume=True,
        queued_at=time.time(),
        thread=summary.thread if summary is not None else "",
    )


class RunQueue:
    """The queue, leases and owners of one deployment (``prefix``), as seen by instance ``instance``."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, instance: str, lease_seconds: float) -> None:
        self._r = client
        self.instance = instance
        # A lease lasts 3/4 of ``lease_seconds`` and is renewed every quarter (see LeaseKeeper):
        # it survives two missed renewals, and a dead owner's runs are claimed within lease_seconds.
        self.lease_ms = int(lease_seconds * 750)
        self._queue, self._jobs = prefix + "queue", prefix + "jobs"
        self._leases, self._owners = prefix + "leases", prefix + "owners"
        self.control = prefix + "control"
        self._take = client.register_script(_TAKE)
        self._cancel_script = client.register_script(_CANCEL)
        self._renew = client.register_script(_RENEW)
        self._claim = client.register_script(_CLAIM)
        self._expired = client.register_script(_EXPIRED)
        self._release = client.register_script(_RELEASE)
        self._requeue = client.register_script(_REQUEUE)
        self._counter = prefix + "queue:n"
        self._cancel = prefix + "cancel:"
        self._admitting = prefix + "admitting:"
        self._released = prefix + "released:"
        self._instances = prefix + "instances"

    async def push(self, job: Job) -> None:
        """Queue ``job`` behind every job queued before it, and wake the instances."""
        n = await self._r.incr(self._counter)
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hset(self._jobs, job.run_id, msgspec.json.encode(job))
            pipe.zadd(self._queue, {job.run_id: n})
            pipe.publish(self.control, QUEUED)
            await pipe.execute()

    async def take(self) -> tuple[Job, bool] | None:
        """The oldest queued job, now leased to this instance, and whether a cancel is waiting for
        it (asked while it was being admitted); None if the queue is empty."""
        taken = await self._take(
            keys=[self._queue, self._jobs, self._leases, self._owners],
            args=[self.instance, self.lease_ms, self._cancel],
        )
        if not taken:
            return None
        return msgspec.json.decode(taken[0], type=Job), bool(taken[1])

    async def cancel(self, run_id: str) -> str:
        """One atomic step of a cancel: ``removed`` (it was queued; now out of the queue and leased
        to this instance, which ends it), ``owned`` (an instance executes it: tell it), ``admitting``
        (being admitted: the instance that takes it cancels it at once), or ``none``."""
        answer = await self._cancel_script(
            keys=[self._queue, self._jobs, self._owners, self._admitting, self._cancel, self._leases],
            args=[run_id, 600, self.instance, self.lease_ms],
        )
        return answer.decode() if isinstance(answer, bytes) else str(answer)

    async def size(self) -> int:
        return await self._r.zcard(self._queue)

    async def renew(self, run_ids: list[str]) -> list[str]:
        """Extend this instance's leases; returns the runs whose lease it no longer holds."""
        if not run_ids:
            return []
        lost = await self._renew(
            keys=[self._leases, self._owners, self._released], args=[self.instance, self.lease_ms, *run_ids]
        )
        return [r.decode() for r in lost]

    async def expired(self) -> list[str]:
        """Runs whose owner stopped renewing its lease (it died, or lost Redis for a lease)."""
        return [r.decode() for r in await self._expired(keys=[self._leases])]

    async def claim(self, run_id: str) -> bool:
        """Take over ``run_id`` if its lease expired (or it never had one and nobody owns it)."""
        return bool(await self._claim(keys=[self._leases, self._owners], args=[self.instance, run_id, self.lease_ms]))

    async def release(self, run_id: str) -> None:
        """Give up this instance's lease of ``run_id`` (it finished, or was handed over)."""
        await self._release(
            keys=[self._leases, self._owners, self._released], args=[self.instance, run_id, self.lease_ms]
        )

    async def requeue(self, job: Job) -> bool:
        """Give up this instance's lease of ``job.run_id`` and queue it again, in one step (so it is
        never without both, and a take of it, here or elsewhere, is never undone); False if this
        instance no longer held the lease."""
        return bool(
            await self._requeue(
                keys=[self._leases, self._owners, self._released, self._queue, self._jobs, self._counter, self.control],
                args=[self.instance, job.run_id, self.lease_ms, msgspec.json.encode(job), QUEUED],
            )
        )

    async def holds(self, run_id: str) -> bool:
        """Whether this instance holds ``run_id``'s lease."""
        return await self.owner(run_id) == self.instance

    async def owner(self, run_id: str) -> str | None:
        owner = await self._r.hget(self._owners, run_id)
        return owner.decode() if owner else None

    async def queued(self, run_id: str) -> bool:
        return await self._r.zscore(self._queue, run_id) is not None

    async def admitting(self, run_id: str, seconds: float) -> None:
        """Mark ``run_id`` as being admitted (``run.queued`` written, not queued yet) for up to
        ``seconds``: the sweep for runs without a lease or a place in the queue leaves it alone."""
        await self._r.set(self._admitting + run_id, self.instance, ex=max(1, int(seconds)))

    async def admitted(self, run_id: str) -> None:
        await self._r.delete(self._admitting + run_id)

    async def is_admitting(self, run_id: str) -> bool:
        return bool(await self._r.exists(self._admitting + run_id))

    async def announce(self, load: InstanceLoad) -> None:
        """Say this instance's capacity (``instances`` shows it until it is a lease old)."""
        await self._r.hset(self._instances, self.instance, msgspec.json.encode(load))

    async def instances(self) -> list[InstanceLoad]:
        """Every instance that announced its capacity within a lease, by name; older ones are removed."""
        stale_before = time.time() - self.lease_ms / 750
        loads, stale = [], []
        for name, data in (await self._r.hgetall(self._instances)).items():
            try:
                load = msgspec.json.decode(data, type=InstanceLoad)
            except msgspec.DecodeError:  # not an instance's (another version's?): not ours to judge
                continue
            if load.seen < stale_before:
                stale.append(name)
            else:
                loads.append(load)
        if stale:
            await self._r.hdel(self._instances, *stale)
        return sorted(loads, key=lambda load: load.instance)

    async def send(self, message: ControlMessage) -> None:
        """Publish ``message`` on the deployment's control channel (every instance hears it)."""
        await self._r.publish(self.control, encode(message))

    async def send_cancel(self, run_id: str, by: Actor | None = None) -> None:
        """Ask the run's owner, wherever it is, to cancel it."""
        await self.send(CancelRun(run=run_id, by=by))
