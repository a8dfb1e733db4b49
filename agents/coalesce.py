"""Token coalescing at the source: deltas arriving within a window become one ``token`` event.

At high token rates this cuts the event count (and every watcher's frames) by the number of
deltas per window, while text order and content are untouched and ``seq`` stays contiguous.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from runwatch.agents.events import Token

#: A token event is published early once its text reaches this many characters, however young the
#: window, and no token event holds more (a longer delta is split): one event stays small enough to
#: share, to send and to hold, whatever the model's speed or chunk size.
MAX_EVENT_CHARS = 16_384


class TokenCoalescer:
    """Buffers text for at most ``window`` seconds after the first buffered delta, and at most
    ``max_chars`` characters.

    ``window == 0`` publishes every delta as it comes. ``flush`` must be awaited before the run
    publishes any other event, so that tokens never overtake or trail what follows them.
    """

    def __init__(
        self,
        run_id: str,
        emit: Callable[[Token], Awaitable[Any]],
        window: float,
        *,
        max_chars: int = MAX_EVENT_CHARS,
    ) -> None:
        self._run_id = run_id
        self._emit = emit
        self._window = window
        self._max_chars = max_chars
        self._parts: list[str] = []
        self._count = 0
        self._chars = 0
        self._timer: asyncio.Task[None] | None = None
        self._sleeping = False
        self.events = 0
        self.deltas = 0

    async def add(self, text: str) -> None:
        """Buffer (or publish) one delta; a delta longer than ``max_chars`` is split across events,
        which count it once, in the event where it begins."""
        if not text:
            return
        self.deltas += 1
        count = 1
        if self._window <= 0:
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
            self._parts.append(text)
            self._count += count
            self._chars += len(text)
            if self._timer is None:
                self._sleeping = True
                self._timer = asyncio.create_task(self._flush_after_window())

    async def _flush_after_window(self) -> None:
        await asyncio.sleep(self._window)
        self._sleeping = False
        self._timer = None
        await self._publish_buffer()

    async def flush(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            if self._sleeping:
                timer.cancel()
                self._sleeping = False
            else:
                await asyncio.shield(timer)
        await self._publish_buffer()

    async def _publish_buffer(self) -> None:
        if self._parts:
            text, count = "".join(self._parts), self._count
            self._parts.clear()
            self._count = self._chars = 0
            await self._publish(text, count)

    async def _publish(self, text: str, deltas: int = 1) -> None:
        self.events += 1
        await self._emit(Token(run_id=self._run_id, text=text, deltas=deltas))
