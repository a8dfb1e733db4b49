"""Token coalescing at the source: deltas arriving within a window become one ``token`` event.

At high token rates this cuts the event count (and every watcher's frames) by the number of
deltas per window, while text order and content are untouched and ``seq`` stays contiguous.
The windows of all the runs of a process share one timer (``WindowClock``), so a window costs a
queue entry, not a task and a timer of its own: with hundreds of runs streaming, that was a
task wake-up per token event.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import deque

import structlog

from runwatch.agents.events import Emit, Token

log = structlog.get_logger()

#: A token event is published early once its text reaches this many characters, however young the
#: window, and no token event holds more (a longer delta is split): one event stays small enough to
#: share, to send and to hold, whatever the model's speed or chunk size.
MAX_EVENT_CHARS = 16_384


class WindowClock:
    """One timer for many coalescers that share a window length.

    A coalescer whose window opens is queued with its deadline; one task sleeps until the first
    deadline and publishes every buffer due by then, or due within ``slack`` (a window may close up
    to ``slack`` early, never late, but for the loop's own lateness). Windows of one length open in
    deadline order, so the queue is first in, first out. The task ends when the queue is empty.
    """

    def __init__(self, window: float, *, slack: float = 0.002) -> None:
        self.window = window
        self._slack = min(slack, window / 4)
        self._queue: deque[tuple[float, TokenCoalescer, int]] = deque()
        self._task: asyncio.Task[None] | None = None

    def open(self, coalescer: TokenCoalescer, generation: int) -> None:
        self._queue.append((time.monotonic() + self.window, coalescer, generation))
        if self._task is None:
            # A context of its own: not the first run's (its log fields), whose task created it.
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="token-window-clock", context=contextvars.Context()
            )

    async def _run(self) -> None:
        queue = self._queue
        try:
            while queue:
                delay = queue[0][0] - time.monotonic()
                if delay > self._slack:
                    await asyncio.sleep(delay)
                due = time.monotonic() + self._slack
                while queue and queue[0][0] <= due:
                    _, coalescer, generation = queue.popleft()
                    await coalescer._window_closed(generation)
        finally:
            self._task = None


class TokenCoalescer:
    """Buffers text for at most ``window`` seconds after the first buffered delta, and at most
    ``max_chars`` characters.

    ``window == 0`` publishes every delta as it comes. ``flush`` must be awaited before the run
    publishes any other event, so that tokens never overtake or trail what follows them. A
    publish that fails when a window closes is raised by the next ``add`` or ``flush``.
    """

    def __init__(
        self,
        run_id: str,
        emit: Emit,
        window: float,
        *,
        max_chars: int = MAX_EVENT_CHARS,
        clock: WindowClock | None = None,
    ) -> None:
        self._run_id = run_id
        self._emit = emit
        self._window = window
        self._max_chars = max_chars
        self._clock = clock if clock is not None else WindowClock(window) if window > 0 else None
        self._parts: list[str] = []
        self._count = 0
        self._chars = 0
        #: Bumped whenever the buffer is taken, so a closing window can tell it is still the one it opened.
        self._generation = 0
        self._closing = False
        self._closed: asyncio.Future[None] | None = None
        self._failed: BaseException | None = None
        self.events = 0
        self.deltas = 0
        #: The ``ts`` of the first token event published (the step's first token time), or None.
        self.first_at: float | None = None

    async def add(self, text: str) -> None:
        """Buffer (or publish) one delta; a delta longer than ``max_chars`` is split across events,
        which count it once, in the event where it begins."""
        self._raise_failure()
        if not text:
            return
        self.deltas += 1
        count = 1
        if self._clock is None:
            for start in range(0, len(text), self._max_chars):
                await self._publish(text[start : start + self._max_chars], count)
                count = 0
            return
        while self._chars + len(text) >= self._max_chars:
            room = self._max_chars - self._chars
            self._parts.append(text[:room])
            self._count += count
            self._chars += room
            count = 0
            text = text[room:]
            await self.flush()
        if text:
            if not self._parts:
                self._clock.open(self, self._generation)
            self._parts.append(text)
            self._count += count
            self._chars += len(text)

    async def _window_closed(self, generation: int) -> None:
        """Called by the clock: publish the buffer if it is still the one whose window closed."""
        if generation != self._generation or not self._parts:
            return
        self._closing = True
        try:
            await self._publish_buffer()
        except Exception as exc:
            self._failed = exc
            log.warning("tokens.publish_failed", run_id=self._run_id, error=repr(exc))
        finally:
            self._closing = False
            if self._closed is not None:
                self._closed.set_result(None)
                self._closed = None

    async def flush(self) -> None:
        if self._closing:  # the clock is publishing this buffer: what follows must wait for it
            if self._closed is None:
                self._closed = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._closed)
        self._raise_failure()
        await self._publish_buffer()

    def _raise_failure(self) -> None:
        """A publish that failed when a window closed, raised once, in the run's own task."""
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed

    async def _publish_buffer(self) -> None:
        if self._parts:
            text, count = "".join(self._parts), self._count
            self._parts = []
            self._count = self._chars = 0
            self._generation += 1
            await self._publish(text, count)

    async def _publish(self, text: str, deltas: int = 1) -> None:
        self.events += 1
        token = Token(run_id=self._run_id, text=text, deltas=deltas)
        await self._emit(token)
        if self.first_at is None:
            self.first_at = token.ts or time.time()  # (an emit without a bus sets no ts)
