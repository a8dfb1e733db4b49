"""One read path over the bus (recent events of live runs) and the store (everything else)."""

from __future__ import annotations

from runwatch.agents.bus import Bus
from runwatch.agents.events import Published
from runwatch.agents.store import Store


class History:
    """Reads a run's events from any position, gap-free.

    The bus answers when it still holds position ``after + 1``; otherwise the store does, after a
    flush, so it holds everything published before the read. Repeated reads therefore walk from
    the store into the bus's live log without a gap or a duplicate.
    """

    def __init__(self, bus: Bus, store: Store) -> None:
        self.bus = bus
        self.store = store

    async def read(self, run_id: str, after: int, limit: int) -> list[Published]:
        items = self.bus.read(run_id, after, limit)
        if items is not None:
            return items
        return await self.store.events(run_id, after, limit)

    async def exists(self, run_id: str) -> bool:
        return self.bus.head(run_id) > 0 or await self.store.get_run(run_id) is not None
