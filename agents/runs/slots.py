"""An instance's ``max_running`` slots, and which run holds one.

A run executes holding a slot (``holding``). While it waits for people it lends its slot out
(``lend``), and takes one back before anything runs again (``take_back``). A slot may also be
acquired before its run exists — a cluster's take loop acquires one, then takes a job — and
``reserve``d for that run: the run executes on it instead of acquiring another, or gives it back
while it waits for its turn in its thread (``unreserve``), where it could be the slot the run
before it needs to go on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from runwatch.agents.runs.handle import RunHandle


class Slots:
    __slots__ = ("_free", "_reserved", "count")

    def __init__(self, count: int) -> None:
        self.count = count
        self._free = asyncio.Semaphore(count)
        self._reserved: set[str] = set()

    @property
    def free(self) -> int:
        """Slots nobody holds now."""
        return self._free._value

    async def acquire(self) -> None:
        """Wait for a free slot and hold it (for a run not made yet: ``reserve`` it, or ``release``)."""
        await self._free.acquire()

    def release(self) -> None:
        self._free.release()

    def reserve(self, run_id: str) -> None:
        """The slot just acquired is ``run_id``'s: it executes on it."""
        self._reserved.add(run_id)

    def unreserve(self, run_id: str) -> None:
        """Give back the slot reserved for ``run_id``, if there is one."""
        if run_id in self._reserved:
            self._reserved.discard(run_id)
            self._free.release()

    @contextlib.asynccontextmanager
    async def holding(self, handle: RunHandle) -> AsyncIterator[None]:
        """Hold a slot for ``handle`` (its reserved one, else one acquired now) until the block ends;
        whatever it holds then is given back."""
        if handle.id in self._reserved:
            self._reserved.discard(handle.id)
        else:
            await self._free.acquire()
        handle.holds_slot = True
        try:
            yield
        finally:
            self.lend(handle)

    def lend(self, handle: RunHandle) -> None:
        """``handle`` gives its slot back for now (nothing of it runs while people decide)."""
        if handle.holds_slot:
            handle.holds_slot = False
            self._free.release()

    async def take_back(self, handle: RunHandle) -> None:
        """``handle`` holds a slot again, waiting for one if it lent its own out."""
        if not handle.holds_slot:
            await self._free.acquire()
            handle.holds_slot = True
