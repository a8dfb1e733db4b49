"""The write side both stores share: a bounded queue of events to write, and what each commit tells."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from runwatch.agents.bus.base import Watermark
from runwatch.agents.events import Published

log = structlog.get_logger()


class WriteBuffer:
    """Counts events appended and written (and their bytes), makes producers wait past the bounds
    (``ready``), and on each commit tells the ``on_durable`` callbacks and wakes ``flush``.

    A store appends to ``_pending`` (with ``_count``) and, on the event loop, reports each batch
    it is done with through ``_done``.
    """

    def __init__(self, *, max_pending: int, max_pending_bytes: int) -> None:
        self._max_pending = max_pending
        self._max_pending_bytes = max_pending_bytes
        #: Appended, not yet taken by the writer.
        self._pending: list[Published] = []
        self._appended = 0
        self._written = Watermark()
        #: Bytes appended and not yet durable (pending or being written).
        self._unwritten_bytes = 0
        self._durable: list[Callable[[Sequence[Published]], None]] = []

    def _count(self, published: Published) -> None:
        self._appended += 1
        self._unwritten_bytes += len(published.data)

    def on_durable(self, callback: Callable[[Sequence[Published]], None]) -> None:
        self._durable.append(callback)

    async def ready(self) -> None:
        """Backpressure: wait while the pending bound (events or bytes) is exceeded."""
        while self.unwritten > self._max_pending or self._unwritten_bytes > self._max_pending_bytes:
            await self._written.reached(self._written.value + 1)

    @property
    def pending(self) -> int:
        """Events waiting for the next batch."""
        return len(self._pending)

    @property
    def unwritten(self) -> int:
        """Events appended and not yet durable (pending, or in the batch being written)."""
        return self._appended - self._written.value

    async def flush(self) -> None:
        """Return once everything appended before the call is durable."""
        await self._written.reached(self._appended)

    def _done(self, batch: Sequence[Published], durable: Sequence[Published]) -> None:
        """On the event loop: ``batch`` is off the writer's hands, ``durable`` of it committed."""
        self._unwritten_bytes -= sum(len(p.data) for p in batch)
        self._written.advance(len(batch))  # (waiters resume after the callbacks below)
        if durable:
            for callback in self._durable:
                try:
                    callback(durable)
                except Exception:
                    log.exception("store.durable_callback_failed")
