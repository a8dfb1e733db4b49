"""The write side both stores share: a bounded queue of events to write, and what each commit tells."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import structlog

from runwatch.agents.bus.recent import Watermark
from runwatch.agents.events import Published

log = structlog.get_logger()

#: Characters of a run's final answer the store keeps (searched; previewed in summaries).
ANSWER_MAX = 16_384
#: Answers waiting for their run's end to be written, at most (a bound for ends that never come).
MAX_ANSWERS = 10_000


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
        #: Runs' final answers, until their ``run.finished`` is written (``keep_answer``).
        self._answers: dict[str, str] = {}
        self._answers_lock = threading.Lock()

    def keep_answer(self, run_id: str, answer: str) -> None:
        """A succeeded run's final answer (its first ``ANSWER_MAX`` characters), written with its
        ``run.finished``, which must follow: the store keeps it for search and the summary's preview
        without the answer travelling twice. At most ``MAX_ANSWERS`` wait (the oldest go first)."""
        with self._answers_lock:
            # (U+0000 ends a text for SQLite's readers and is refused by PostgreSQL: dropped)
            self._answers[run_id] = answer[:ANSWER_MAX].replace("\x00", "")
            while len(self._answers) > MAX_ANSWERS:
                del self._answers[next(iter(self._answers))]

    def _forget_answers(self, run_ids: list[str]) -> None:
        """After a commit: the answers of the runs whose end it wrote (a run whose end another
        instance wrote keeps its answer until ``MAX_ANSWERS`` newer ones push it out)."""
        with self._answers_lock:
            for run_id in run_ids:
                self._answers.pop(run_id, None)

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
        if self._answers:
            self._forget_answers([p.run_id for p in durable if p.type == "run.finished"])
        self._written.advance(len(batch))  # (waiters resume after the callbacks below)
        if durable:
            for callback in self._durable:
                try:
                    callback(durable)
                except Exception:
                    log.exception("store.durable_callback_failed")
