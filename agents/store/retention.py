"""Retention: finished runs older than the retention period leave the store, with their events."""

from __future__ import annotations

import asyncio
import time

import structlog

from runwatch.agents.store import Store

log = structlog.get_logger()

#: Runs deleted per transaction, so a first sweep of a large backlog never holds a long lock.
CHUNK = 1_000


class Retention:
    """Deletes runs that finished more than ``days`` ago: at start, then every ``every`` seconds.

    Safe with many instances on one database: each chunk is its own transaction and PostgreSQL's
    ``SKIP LOCKED`` keeps two sweeps from fighting over the same runs.
    """

    def __init__(self, store: Store, days: float, every: float = 3600.0) -> None:
        self._store = store
        self._days = days
        self._every = every
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._days > 0:
            self._task = asyncio.create_task(self._loop(), name="runwatch-retention")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def sweep(self) -> int:
        """Delete everything past retention now; returns how many runs went."""
        before = time.time() - self._days * 86400
        deleted = 0
        while True:
            n = await self._store.delete_finished(before, CHUNK)
            deleted += n
            if n < CHUNK:
                break
            await asyncio.sleep(0)  # let the event loop serve between chunks
        if deleted:
            log.info("retention.deleted", runs=deleted, days=self._days)
        return deleted

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # the database is away: try again next time
                log.warning("retention.failed", error=repr(exc))
            await asyncio.sleep(self._every)
