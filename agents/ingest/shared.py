"""What the instances of a deployment share about external runs, and its one-process form.

An external run's agent may post to any instance, and people may press its buttons on any other.
Two parts make that safe, each a Protocol here with the form one process needs (which shares
nothing); a cluster's forms keep them in Redis (``agents/cluster/ingest.py``):

- ``Sharing``: who may touch a run now (``exclusive``), whether this process's copy of a run may be
  behind (``fresh``: another instance may have added to it), and telling every instance's long
  polls that a run changed (``changed``).
- ``Leases``: when each run's lease runs out, what its agent took, and when each agent was last
  heard from.
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
    is exact; leaving it, what this instance published is durable and on its way to the others —
    or, if the run could not be kept that long (the hold was lost, another instance wrote to the
    run), leaving raises ``Unavailable`` and this instance publishes no more to it until held again.
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
    """Each run's lease and what its agent took, and when each agent was heard from: what an
    agent tells any instance by posting or polling.

    Guarantees: a lease ``start``, ``ensure`` or ``renew`` sets, and an ``ack``, are seen by every
    instance; a run ``due`` returns stays due until ``renew`` or ``end``; deadlines are kept on one
    clock (this process's monotonic one; Redis's own), never compared with another's; ``seen`` is
    best effort (a view of who is about, not a rule)."""

    #: Set when a deadline may have come nearer (a run added, a lease shortened).
    changed: asyncio.Event
    #: The longest the keeper may sleep without looking (None: until ``changed`` or the next
    #: deadline — only this process sets deadlines).
    look_every: float | None

    async def start(self, run_id: str, seconds: float) -> None:
        """The run's lease is ``seconds`` long from now on, and runs out ``seconds`` from now."""
        ...

    async def ensure(self, run_id: str, seconds: float) -> None:
        """``start`` — unless the run has a lease already (kept as it runs, not renewed)."""
        ...

    async def renew(self, run_id: str) -> float | None:
        """The run's lease runs out its length from now; returns that length (None: the run has no
        lease — it ended, or its lease was lost)."""
        ...

    async def end(self, run_id: str) -> None:
        """The run has no lease any more, nor anything else here (it ended)."""
        ...

    async def due(self) -> list[str]:
        """Runs whose lease ran out, a bounded number at a time."""
        ...

    async def expired(self, run_id: str) -> bool:
        """The run's lease ran out (False: it has none, or time is left)."""
        ...

    async def until_next(self) -> float | None:
        """Seconds until the earliest deadline of any run (0 if one passed), or None if none."""
        ...

    async def ack(self, run_id: str, c: int) -> None:
        """The run's agent took every control up to ``c``."""
        ...

    async def acked(self, run_id: str) -> int:
        """The highest ``c`` the run's agent said it took (0: none)."""
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
    """``Leases`` in one process: in memory, on the monotonic clock (a step of the wall clock ends
    no lease), one entry per live run and at most ``MAX_AGENTS_SEEN`` agents heard from."""

    look_every = None

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        #: Each live run's lease: (its length, its deadline on ``time.monotonic``).
        self._leases: dict[str, tuple[float, float]] = {}
        self._acked: dict[str, int] = {}
        self._seen: dict[tuple[str, str], float] = {}

    async def start(self, run_id: str, seconds: float) -> None:
        earlier = self._leases.get(run_id)
        self._leases[run_id] = (seconds, time.monotonic() + seconds)
        if earlier is None or seconds < earlier[0]:
            self.changed.set()

    async def ensure(self, run_id: str, seconds: float) -> None:
        if run_id not in self._leases:
            await self.start(run_id, seconds)

    async def renew(self, run_id: str) -> float | None:
        lease = self._leases.get(run_id)
        if lease is None:
            return None
        self._leases[run_id] = (lease[0], time.monotonic() + lease[0])
        return lease[0]

    async def end(self, run_id: str) -> None:
        self._leases.pop(run_id, None)
        self._acked.pop(run_id, None)

    async def due(self) -> list[str]:
        now = time.monotonic()
        return [run_id for run_id, (_, deadline) in self._leases.items() if deadline <= now]

    async def expired(self, run_id: str) -> bool:
        lease = self._leases.get(run_id)
        return lease is not None and lease[1] <= time.monotonic()

    async def until_next(self) -> float | None:
        first = min((deadline for _, deadline in self._leases.values()), default=None)
        return None if first is None else max(0.0, first - time.monotonic())

    async def ack(self, run_id: str, c: int) -> None:
        if run_id in self._leases and c > self._acked.get(run_id, 0):
            self._acked[run_id] = c

    async def acked(self, run_id: str) -> int:
        return self._acked.get(run_id, 0)

    async def seen(self, tenant: str, agent: str) -> None:
        key = (tenant, agent)
        self._seen.pop(key, None)
        self._seen[key] = time.time()
        if len(self._seen) > MAX_AGENTS_SEEN:
            del self._seen[next(iter(self._seen))]

    async def last_seen(self, tenant: str | None) -> dict[str, float]:
        return {agent: at for (t, agent), at in self._seen.items() if tenant is None or t == tenant}
