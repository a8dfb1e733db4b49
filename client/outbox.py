"""A run's events on their way out: coalesced, numbered, and bounded in bytes per client.

**The memory policy.** Every client has one :class:`Budget` (``buffer_bytes``, 8 MiB by default)
that covers every event it holds — waiting or in flight — until the server has stored it. When
it is full, a ``run.token()`` called from plain (synchronous) code blocks up to ``block_timeout``
(1 s by default) for room; past that, or at once when called on a running asyncio loop (which must
never block), the token is **dropped and counted** (``run.dropped_tokens``, ``rw.dropped_tokens``).
Every other event (steps, tools, approvals, the run's end) is always kept: they are few and small,
and losing one would make the run wrong rather than just shorter.

**A token's path.** ``token`` appends the text to the run's *pending* tokens without a lock; they
join the run's events (under the lock, charged to the budget, the policy above applied to all of
them at once) when the run had no event waiting (a window must open), every ``PENDING_TOKENS``
tokens, with a text of ``PENDING_TEXT`` characters or more, when a synchronous caller finds the
budget full (it then waits for room, as above), and before anything else touches the run's events
(another event, the sender taking them — which never waits: pending tokens that find the budget
full then are dropped — or a clear). So the text of a busy stream costs a list append per token, and
a run's pending tokens, outside the budget, stay under ``PENDING_TOKENS`` x ``PENDING_TEXT``.

The budget also counts what waits to be sent, over every run, so that the client's one sender
(``sender.py``) is woken only when it must be: by the first event of a run while it sleeps with
nothing to send, and when ``FLUSH_EVENTS`` events or ``FLUSH_BYTES`` bytes wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

#: The most text one ``token`` event may carry (the server's bound).
MAX_TOKEN_CHARS = 16_384
#: What an event costs beyond its text, roughly: its JSON keys and numbers.
EVENT_OVERHEAD = 64
#: The most events and bytes (as counted here) of one run in one request: well under the server's
#: 1 MiB per request, whatever JSON escaping adds.
BATCH_EVENTS, BATCH_BYTES = 256, 256 << 10
#: Waiting this much, over every run, the sender sends at once rather than lingering.
FLUSH_EVENTS, FLUSH_BYTES = 256, 256 << 10
#: A run's pending tokens join its events once there are this many, and a text this long (or longer)
#: joins at once: a run's pending tokens hold less than PENDING_TOKENS x PENDING_TEXT characters,
#: outside the budget, however many threads report them.
PENDING_TOKENS, PENDING_TEXT = 64, 1024


class Budget:
    """Bytes a client may hold, and what of them waits to be sent. Thread-safe: its lock is every
    outbox's too (one lock a token, whatever it does); ``take`` may wait for room, ``give_back``
    makes it."""

    __slots__ = (
        "asleep",
        "dropped_tokens",
        "limit",
        "lock",
        "mutex",
        "used",
        "waiting_bytes",
        "waiting_events",
        "wake",
    )

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.dropped_tokens = 0
        #: Every outbox's lock: a plain lock (``mutex``, taken directly on a token's path), under a
        #: condition (``lock``) that ``take`` waits on for room. Not re-entrant.
        self.mutex = threading.Lock()
        self.lock = threading.Condition(self.mutex)
        #: Events and bytes handed over and not yet taken by the sender, over every run.
        self.waiting_events = 0
        self.waiting_bytes = 0
        #: Whether the sender sleeps with nothing due to send: a run's first event must wake it.
        self.asleep = False
        #: Wakes the sender (safe from any thread; set by it).
        self.wake: Callable[[], None] = lambda: None

    def take(self, size: int, timeout: float) -> bool:
        """Reserve ``size`` bytes, waiting up to ``timeout`` s for room; ``False`` if there is none
        (hold ``lock``)."""
        if self.used + size > self.limit and not self.lock.wait_for(lambda: self.used + size <= self.limit, timeout):
            self.dropped_tokens += 1
            return False
        self.used += size
        return True

    def give_back(self, size: int) -> None:
        if size:
            with self.lock:
                self.used -= size
                self.lock.notify_all()

    def waiting(self, events: int, size: int) -> bool:
        """Count ``events`` and ``size`` more waiting (hold ``lock``); whether the sender must be
        woken for it now (enough waits)."""
        before = self.waiting_events >= FLUSH_EVENTS or self.waiting_bytes >= FLUSH_BYTES
        self.waiting_events += events
        self.waiting_bytes += size
        return not before and (self.waiting_events >= FLUSH_EVENTS or self.waiting_bytes >= FLUSH_BYTES)

    @property
    def full(self) -> bool:
        """Whether enough waits to send at once."""
        return self.waiting_events >= FLUSH_EVENTS or self.waiting_bytes >= FLUSH_BYTES


class Tokens:
    """Consecutive tokens coalesced into one ``token`` event: their texts kept as parts, joined
    every ``PARTS`` and when the event is taken (no string rebuilt per token, nor a small string
    kept per token)."""

    __slots__ = ("chars", "deltas", "parts")

    PARTS = 64

    def __init__(self, text: str, deltas: int = 1) -> None:
        self.parts = [text]
        self.chars = len(text)
        self.deltas = deltas

    def add(self, text: str, deltas: int = 1) -> None:
        if len(self.parts) == self.PARTS:
            self.parts = ["".join(self.parts)]
        self.parts.append(text)
        self.chars += len(text)
        self.deltas += deltas

    def event(self) -> dict[str, Any]:
        return {"type": "token", "text": "".join(self.parts), "deltas": self.deltas}


class Outbox:
    """One run's events not yet taken, oldest first. Consecutive tokens coalesce into one event
    (text joined, ``deltas`` summed) until they are taken; ``n`` is set when they are taken (a
    part retried keeps its numbers). ``since``: when the oldest waiting event came (monotonic)."""

    __slots__ = (
        "_budget",
        "_events",
        "_pending",
        "_sizes",
        "dropped_tokens",
        "held",
        "next_n",
        "since",
    )

    def __init__(self, budget: Budget) -> None:
        self._budget = budget
        self._events: list[dict[str, Any] | Tokens] = []
        self._sizes: list[int] = []
        #: The newest tokens, not yet in ``_events``: appended without the lock, moved under it.
        self._pending: list[str] = []
        self.next_n = 1
        self.dropped_tokens = 0
        self.since = 0.0
        #: Whether the sender will look at this run anyway (its part is in flight or retried), so
        #: that its first event need not wake it.
        self.held = False

    def __len__(self) -> int:
        """The events waiting (pending tokens count as the one event they will join)."""
        return len(self._events) + (1 if self._pending else 0)

    def token(self, text: str, block: float) -> None:
        """Add ``text`` to the run (see "A token's path"; with the budget full, the pending tokens
        wait up to ``block`` s for room, then are dropped); a text past the server's bound goes as
        several tokens."""
        if len(text) > MAX_TOKEN_CHARS:
            for start in range(0, len(text), MAX_TOKEN_CHARS):
                self.token(text[start : start + MAX_TOKEN_CHARS], block)
            return
        pending = self._pending
        pending.append(text)
        # (After the append: events the sender takes from now on take this text with them.)
        budget = self._budget
        if (
            not self._events
            or len(pending) >= PENDING_TOKENS
            or len(text) >= PENDING_TEXT
            or (block and budget.used >= budget.limit)
        ):
            with budget.lock:
                wake = self._move_pending(block)
            if wake:
                budget.wake()

    def _move_pending(self, block: float) -> bool:
        """(Holding the lock.) The pending tokens into the events, charged to the budget (or
        dropped and counted, past ``block`` s of a full budget); whether the sender must be woken."""
        pending = self._pending
        count = len(pending)
        if not count:
            return False
        texts = pending[:count]
        del pending[:count]  # (a token appended meanwhile stays: it is past ``count``)
        text = "".join(texts)
        size = _utf8_len(text)
        budget = self._budget
        if budget.used + size <= budget.limit:
            budget.used += size
        elif not budget.take(size, block):
            self.dropped_tokens += count
            budget.dropped_tokens += count - 1  # (``take`` counted one)
            return False
        if len(text) <= MAX_TOKEN_CHARS:
            return self._add_text(text, size, count)
        wake = False  # (rare: more than one event's text at once) each token as it came
        for one in texts:
            wake = self._add_text(one, _utf8_len(one), 1) or wake
        return wake

    def _add_text(self, text: str, size: int, deltas: int) -> bool:
        """(Holding the lock, ``size`` charged.) ``text`` (at most ``MAX_TOKEN_CHARS``) joins the last
        event if that is tokens with room, else is a token event of its own; whether to wake the sender."""
        last = self._events[-1] if self._events else None
        if type(last) is Tokens and last.chars + len(text) <= MAX_TOKEN_CHARS:
            last.add(text, deltas)
            self._sizes[-1] += size
            return self._budget.waiting(0, size)
        return self._append(Tokens(text, deltas), size)

    def put(self, event: dict[str, Any], size: int = 0, block: float = 0.0) -> None:
        """Add any other event (always kept: see the module's policy); the run's pending tokens go
        first (waiting up to ``block`` s for room, the caller's own)."""
        size += EVENT_OVERHEAD
        budget = self._budget
        with budget.lock:
            wake = self._move_pending(block)  # the tokens before it go before it
            budget.used += size
            wake = self._append(event, size) or wake
        if wake:
            budget.wake()

    def _append(self, event: dict[str, Any] | Tokens, size: int) -> bool:
        """(Holding the lock.) Whether the sender must be woken."""
        self._events.append(event)
        self._sizes.append(size)
        budget = self._budget
        wake = budget.waiting(1, size)
        if len(self._events) == 1:
            self.since = time.monotonic()
            if budget.asleep and not self.held:
                budget.asleep = False
                wake = True
        return wake

    def take(
        self, most: int, most_bytes: int = BATCH_BYTES, *, at_least_one: bool = True
    ) -> tuple[list[dict[str, Any]], list[int]]:
        """Up to ``most`` events and ``most_bytes`` (but one at least, if ``at_least_one``), numbered,
        and the bytes each holds (give them back once stored)."""
        with self._budget.lock:
            self._move_pending(0.0)
            count, total = 0, 0
            for size in self._sizes[:most]:
                if total + size > most_bytes and (count or not at_least_one):
                    break
                count, total = count + 1, total + size
            taken, self._events = self._events[:count], self._events[count:]
            sizes, self._sizes = self._sizes[:count], self._sizes[count:]
            self._budget.waiting(-count, -total)
        events = [e.event() if type(e) is Tokens else e for e in taken]
        for event in events:
            event["n"] = self.next_n
            self.next_n += 1
        return events, sizes

    def clear(self) -> int:
        """Drop every waiting event; the bytes they held."""
        with self._budget.lock:
            self._move_pending(0.0)
            total = sum(self._sizes)
            self._budget.waiting(-len(self._events), -total)
            self._events, self._sizes = [], []
        return total


def _utf8_len(text: str) -> int:
    """``text``'s size in UTF-8, without encoding the (usual) ASCII text."""
    return len(text) if text.isascii() else len(text.encode())
