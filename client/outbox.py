"""A run's events on their way out: coalesced, numbered, and bounded in bytes per client.

**The memory policy.** Every client has one :class:`Budget` (``buffer_bytes``, 8 MiB by default)
that covers every event it holds — waiting or in flight — until the server has stored it. When
it is full, a ``run.token()`` called from plain (synchronous) code blocks up to ``block_timeout``
(1 s by default) for room; past that, or at once when called on a running asyncio loop (which must
never block), the token is **dropped and counted** (``run.dropped_tokens``, ``rw.dropped_tokens``).
Every other event (steps, tools, approvals, the run's end) is always kept: they are few and small,
and losing one would make the run wrong rather than just shorter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

#: The most text one ``token`` event may carry (the server's bound).
MAX_TOKEN_CHARS = 16_384
#: What an event costs beyond its text, roughly: its JSON keys and numbers.
EVENT_OVERHEAD = 64
#: The most bytes (as counted here) one batch carries: well under the server's 1 MiB per batch,
#: whatever JSON escaping adds.
BATCH_BYTES = 256 << 10


class Budget:
    """Bytes a client may hold: thread-safe; ``take`` may wait for room, ``give_back`` makes it."""

    __slots__ = ("_room", "dropped_tokens", "limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.dropped_tokens = 0
        self._room = threading.Condition()

    def take(self, size: int, timeout: float) -> bool:
        """Reserve ``size`` bytes, waiting up to ``timeout`` s for room; ``False`` if there is none."""
        with self._room:
            if not self._room.wait_for(lambda: self.used + size <= self.limit, timeout):
                self.dropped_tokens += 1
                return False
            self.used += size
            return True

    def force(self, size: int) -> None:
        """Reserve ``size`` bytes whatever the limit (the events that are never dropped)."""
        with self._room:
            self.used += size

    def give_back(self, size: int) -> None:
        with self._room:
            self.used -= size
            self._room.notify_all()


class Outbox:
    """One run's events not yet sent, oldest first. Consecutive tokens coalesce into one event
    (text joined, ``deltas`` summed) until they are taken; ``n`` is set when a batch is taken, so a
    retried batch keeps its numbers. ``wake`` is called (from any thread) when the first event
    arrives in an empty outbox and when it reaches ``batch`` events."""

    __slots__ = ("_budget", "_events", "_lock", "_sizes", "_wake", "batch", "dropped_tokens", "next_n")

    def __init__(self, budget: Budget, wake: Callable[[], None], batch: int = 256) -> None:
        self._budget = budget
        self._wake = wake
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._sizes: list[int] = []
        self.batch = batch
        self.next_n = 1
        self.dropped_tokens = 0

    def __len__(self) -> int:
        return len(self._events)

    def token(self, text: str, block: float) -> None:
        """Add ``text`` to the run (block up to ``block`` s for room, then drop it); a text past the
        server's bound goes as several tokens."""
        if len(text) > MAX_TOKEN_CHARS:
            for start in range(0, len(text), MAX_TOKEN_CHARS):
                self.token(text[start : start + MAX_TOKEN_CHARS], block)
            return
        size = len(text.encode())
        if not self._budget.take(size, block):
            self.dropped_tokens += 1
            return
        with self._lock:
            last = self._events[-1] if self._events else None
            if last is not None and last["type"] == "token" and len(last["text"]) + len(text) <= MAX_TOKEN_CHARS:
                last["text"] += text
                last["deltas"] += 1
                self._sizes[-1] += size
                return
            self._append({"type": "token", "text": text, "deltas": 1}, size)

    def put(self, event: dict[str, Any], size: int = 0) -> None:
        """Add any other event (always kept: see the module's policy)."""
        size += EVENT_OVERHEAD
        self._budget.force(size)
        with self._lock:
            self._append(event, size)

    def _append(self, event: dict[str, Any], size: int) -> None:
        self._events.append(event)
        self._sizes.append(size)
        if len(self._events) in (1, self.batch):
            self._wake()

    def take(self) -> tuple[list[dict[str, Any]], int]:
        """Up to ``batch`` events (and ``BATCH_BYTES``), numbered, and the bytes they hold (give them
        back once stored)."""
        with self._lock:
            count, total = 0, 0
            for size in self._sizes[: self.batch]:
                if count and total + size > BATCH_BYTES:
                    break
                count, total = count + 1, total + size
            events, self._events = self._events[:count], self._events[count:]
            sizes, self._sizes = self._sizes[:count], self._sizes[count:]
        for event in events:
            event["n"] = self.next_n
            self.next_n += 1
        return events, sum(sizes)
