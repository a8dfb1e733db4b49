"""Rate limits and quotas shared by every transport: runs started per minute per principal, and
WebSockets held per principal. In Redis when the deployment has one (so they hold across
instances, on Redis's clock), in memory otherwise.

Runs per minute is a token bucket: ``per_minute`` tokens, refilled continuously, so a principal
may start a burst of that many and then one every ``60 / per_minute`` seconds. Connections are
leases: each open socket is renewed by its instance every ``CONNECTION_TTL / 3`` seconds, so the
sockets of an instance that died stop counting within ``CONNECTION_TTL``.
"""

from __future__ import annotations

import time
from typing import Protocol

import redis.asyncio
import structlog
from redis.exceptions import RedisError

from runwatch.agents.errors import Unavailable

log = structlog.get_logger()

#: Seconds an open connection counts against its principal without being renewed.
CONNECTION_TTL = 60.0


class Limiter(Protocol):
    async def take_run(self, principal: str, per_minute: float) -> float:
        """Take one run start for ``principal``: 0 if allowed, else seconds until one would be."""
        ...

    async def open_connection(self, principal: str, conn: str, limit: int) -> bool:
        """Count socket ``conn`` against ``principal``; False (and not counted) at ``limit``."""
        ...

    async def close_connection(self, principal: str, conn: str) -> None: ...

    async def renew_connections(self, conns: list[tuple[str, str]]) -> None:
        """Renew the leases of these open (principal, conn) sockets."""
        ...


class MemoryLimiter:
    """One process's limits (no Redis configured). Bounded: a bucket is dropped once full again."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._conns: dict[str, set[str]] = {}

    async def take_run(self, principal: str, per_minute: float) -> float:
        now = time.monotonic()
        rate = per_minute / 60
        tokens, stamp = self._buckets.get(principal, (per_minute, now))
        tokens = min(per_minute, tokens + (now - stamp) * rate)
        if tokens >= 1:
            self._buckets[principal] = (tokens - 1, now)
            return 0.0
        self._buckets[principal] = (tokens, now)
        if len(self._buckets) > 10_000:  # forget principals whose buckets have refilled
            horizon = now - 60
            self._buckets = {k: v for k, v in self._buckets.items() if v[1] > horizon}
        return (1 - tokens) / rate

    async def open_connection(self, principal: str, conn: str, limit: int) -> bool:
        held = self._conns.setdefault(principal, set())
        if len(held) >= limit:
            return False
        held.add(conn)
        return True

    async def close_connection(self, principal: str, conn: str) -> None:
        held = self._conns.get(principal)
        if held is not None:
            held.discard(conn)
            if not held:
                del self._conns[principal]

    async def renew_connections(self, conns: list[tuple[str, str]]) -> None:
        return None


_TAKE_RUN = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local burst = tonumber(ARGV[1])
local rate = burst / 60
local v = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(v[1]) or burst
local stamp = tonumber(v[2]) or t
tokens = math.min(burst, tokens + math.max(0, t - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(t))
redis.call('EXPIRE', KEYS[1], 120)
return tostring(wait)
"""

_OPEN = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], t + tonumber(ARGV[3]), ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 1)
return 1
"""

_RENEW = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', t + tonumber(ARGV[#KEYS + 1]), ARGV[i])
  redis.call('EXPIRE', key, math.ceil(tonumber(ARGV[#KEYS + 1])) + 1)
end
return 1
"""


class RedisLimiter:
    """Limits in Redis, one Lua script per decision (atomic, on Redis's clock)."""

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str, instance: str) -> None:
        self._r = client
        self._prefix = prefix + "limit:"
        self._instance = instance
        self._take = client.register_script(_TAKE_RUN)
        self._open = client.register_script(_OPEN)
        self._renew = client.register_script(_RENEW)

    async def take_run(self, principal: str, per_minute: float) -> float:
        try:
            wait = await self._take(keys=[f"{self._prefix}runs:{principal}"], args=[per_minute])
        except (RedisError, OSError) as exc:
            raise Unavailable(f"the broker is unreachable ({exc}); try again in a moment") from None
        return float(wait)

    def _member(self, conn: str) -> str:
        return f"{self._instance}/{conn}"

    async def open_connection(self, principal: str, conn: str, limit: int) -> bool:
        key = f"{self._prefix}conns:{principal}"
        try:
            return bool(await self._open(keys=[key], args=[self._member(conn), limit, CONNECTION_TTL]))
        except (RedisError, OSError) as exc:
            # Let it in: without Redis the instance closes its sockets (1012) until it is back.
            log.warning("limits.unavailable", error=repr(exc))
            return True

    async def close_connection(self, principal: str, conn: str) -> None:
        await self._r.zrem(f"{self._prefix}conns:{principal}", self._member(conn))

    async def renew_connections(self, conns: list[tuple[str, str]]) -> None:
        for i in range(0, len(conns), 500):
            chunk = conns[i : i + 500]
            await self._renew(
                keys=[f"{self._prefix}conns:{p}" for p, _ in chunk],
                args=[*(self._member(c) for _, c in chunk), CONNECTION_TTL],
            )
