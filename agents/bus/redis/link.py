"""This instance's link to Redis: a pool of connections for commands and reads, one connection for
publishing (so reads never delay it), the subscriber, whether Redis is reachable now, and the
background work done over them (follows, repairs), kept and closed with the link."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = structlog.get_logger()

#: Connections to Redis per instance for commands and reads (the subscriber's included); more
#: callers wait their turn. Publishing has a connection of its own, so reads never delay it.
REDIS_CONNECTIONS = 32

#: What a lost connection raises (a refused command raises another ``RedisError``).
CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class Link:
    """See the module docstring. ``healthy`` and ``problem`` are the broker's to set (it connects);
    ``connected`` is set while the link is up; ``pubsub`` is the subscriber, once connected."""

    def __init__(self, url: str, prefix: str) -> None:
        self.prefix = prefix
        self.pre = prefix.encode()
        timeouts = {"socket_connect_timeout": 2, "socket_timeout": 5}
        # Callers wait for a free connection (rather than fail) when a thousand watchers read at once.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=REDIS_CONNECTIONS, timeout=10, **timeouts)
        self.redis = aioredis.Redis(connection_pool=pool)
        sender = aioredis.BlockingConnectionPool.from_url(url, max_connections=1, timeout=10, **timeouts)
        self.sender = aioredis.Redis(connection_pool=sender)
        self.pubsub: aioredis.client.PubSub | None = None
        self.connected = asyncio.Event()
        self.healthy = False
        self.problem: str | None = "not connected to Redis yet"
        self._background: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``coro`` in the background, keeping a reference and logging what it raises."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("redis.task_failed", task=task.get_name(), error=repr(exc), exc_info=exc)

    async def subscribe(self, channel: str) -> None:
        if self.pubsub is not None:
            await self.pubsub.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe, if the subscriber is still there; a failing Redis unsubscribes it anyway."""
        try:
            if self.pubsub is not None:
                await self.pubsub.unsubscribe(channel)
        except (RedisError, OSError):
            pass

    async def close(self) -> None:
        """Cancel the background work, then close every connection."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.pubsub is not None:
            await self.pubsub.aclose()
        await self.redis.aclose()
        await self.sender.aclose()
