"""What the instances of a deployment share about external runs, and its one-process form.

An external run's agent may post to any instance, and people may press its buttons on any other.
Two parts make that safe, each a Protocol here with the form one process needs (which shares
nothing); a cluster's forms keep them in Redis (``agents/cluster/ingest.py``):

- ``Sharing``: who may touch a run now (``exclusive``), whether this process's copy of a run may be
  behind (``fresh``: another instance may have added to it), and telling every instance's long
  polls that a run changed (``changed``).
- ``Leases``: when each run's lease runs out, and when each agent was last heard from.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from contextlib import AbstractAsyncContextManager
from typing import Protocol

#: Agents remembered as heard from, per process (the oldest heard from are forgotten first).
MAX_AGENTS_SEEN = 10_000


class Sharing(Protocol):
    """Guarantees: inside ``exclusive(run_id)`` no other instance publishes to the run, and what
    others published to it before is durable (in the store), so a copy caught up from the store
    is exact; leaving it, what this instance published is durable and on its way to the others.
    ``changed`` reaches every other instance at most once (long polls wait ``MAX_WAIT`` at most,
    so a lost one delays a control, never loses it: it is on the run)."""

    #: False where other instances may add to a run: a copy must be caught up from the store.
    fresh: bool

    def exclusive(self, run_id: str) -> AbstractAsyncContextManager[None]:
        """Hold ``run_id`` against every other instance (``Unavailable`` if that cannot be had in
        a few seconds: the client retries)."""
        ...

    async def changed(self, run_id: str) -> None:
        """Tell the other instances' long polls of ``run_id`` to look again."""
        ...


class Leases(Protocol):
    """Guarantees: a lease ``start`` or ``renew`` sets is seen by every instance's ``due`` and
    ``deadline``; a run ``due`` returns stays due until ``renew`` or ``end``; ``seen`` is best
    effort (a view of who is about, not a rule)."""

    #: Set when a deadline may have come nearer (a run added, a lease shortened).
    changed: asyncio.Event
    #: The longest the keeper may sleep without looking (None: until ``changed`` or the next
    #: deadline — only this process sets deadlines).
    look_every: float | None

    async def start(self, run_id: str, seconds: float) -> None:
        """The run's lease is ``seconds`` long from now on, and runs out ``seconds`` from now."""
        ...

    async def renew(self, run_id: str) -> float | None:
        """The run's lease runs out its length from now; returns that length (None: the run has no
        lease — it ended, or never had one here)."""
        ...

    async def end(self, run_id: str) -> None:
        """The run has no lease any more (it ended)."""
        ...

    async def due(self, now: float) -> list[str]:
        """Runs whose lease ran out at ``now`` (epoch seconds), a bounded number at a time."""
        ...

    async def deadline(self, run_id: str) -> float | None:
        """When the run's lease runs out (epoch seconds), or None if it has none."""
        ...

    async def next_deadline(self) -> float | None:
        """The earliest deadline of any run (epoch seconds), or None."""
        ...

    async def seen(self, tenant: str, agent: str) -> None:
        """``agent`` of ``tenant`` was heard from now (a post or a poll)."""
        ...

    async def last_seen(self, tenant: str | None) -> dict[str, float]:
        """When each agent of ``tenant`` (None: every tenant) was last heard from, epoch seconds."""
        ...


class Alone:
    """``Sharing`` in one process: nothing to share. A run's own lock (``ExternalRun.lock``) is
    all the exclusion there is, and this process's copy of a run is the only one."""

    fresh = True

    def exclusive(self, run_id: str) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def changed(self, run_id: str) -> None:
        return None


class MemoryLeases:
    """``Leases`` in one process: in memory, one entry per live run and at most
    ``MAX_AGENTS_SEEN`` agents heard from."""

    look_every = None

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        #: Each live run's lease: (its length, its deadline).
        self._leases: dict[str, tuple[float, float]] = {}
        self._seen: dict[tuple[str, str], float] = {}

    async def start(self, run_id: str, seconds: float) -> None:
        earlier = self._leases.get(run_id)
        self._leases[run_id] = (seconds, time.time() + seconds)
        if earlier is None or seconds < earlier[0]:
            self.changed.set()

    async def renew(self, run_id: str) -> float | None:
        lease = self._leases.get(run_id)
        if lease is None:
            return None
        self._leases[run_id] = (lease[0], time.time() + lease[0])
        return lease[0]

    async def end(self, run_id: str) -> None:
        self._leases.pop(run_id, None)

    async def due(self, now: float) -> list[str]:
        return [run_id for run_id, (_, deadline) in self._leases.items() if deadline <= now]

    async def deadline(self, run_id: str) -> float | None:
        lease = self._leases.get(run_id)
        return lease[1] if lease is not None else None

    async def next_deadline(self) -> float | None:
        return min((deadline for _, deadline in self._leases.values()), default=None)

    async def seen(self, tenant: str, agent: str) -> None:
        key = (tenant, agent)
        self._seen.pop(key, None)
        self._seen[key] = time.time()
        if len(self._seen) > MAX_AGENTS_SEEN:
            del self._seen[next(iter(self._seen))]

    async def last_seen(self, tenant: str | None) -> dict[str, float]:
        return {agent: at for (t, agent), at in self._seen.items() if tenant is None or t == tenant}
