"""What one WebSocket connection sends: a subscription's cursor into a log, and the frame being
assembled from server messages (acks, errors) and events."""

from __future__ import annotations

from runwatch.agents.events import Published


class Subscription:
    __slots__ = ("cursor", "filtered", "live", "overflowed", "stream")

    def __init__(self, stream: str, cursor: int) -> None:
        self.stream = stream
        self.cursor = cursor
        #: True once caught up with the bus's live log; only then does ``max_lag`` apply.
        self.live = False
        self.overflowed = False
        #: Only some of the stream's entries are for this watcher (the runs feed, of one tenant).
        self.filtered = False


def fit(batch: list[Published], room: int, *, at_least_one: bool) -> list[Published]:
    """The head of ``batch`` that fits in ``room`` bytes (one event at least, if asked)."""
    size = 0
    for i, p in enumerate(batch):
        size += len(p.data)
        if size > room:
            return batch[: max(i, 1 if at_least_one else 0)]
    return batch


class Frame:
    """One outgoing frame being assembled: its items, payload bytes, events, oldest publish time."""

    __slots__ = ("events", "items", "oldest", "size")

    def __init__(self) -> None:
        self.items: list[str] = []
        self.size = 0
        self.events = 0
        self.oldest: float | None = None

    def add_message(self, text: str) -> None:
        self.items.append(text)
        self.size += len(text)

    def add_events(self, sub: Subscription, batch: list[Published]) -> None:
        """Take ``batch`` (consecutive, non-empty) into the frame and move ``sub``'s cursor past it."""
        sub.cursor = batch[-1].seq
        for p in batch:
            self.items.append(p.text)
            self.size += len(p.data)
        self.events += len(batch)
        first = batch[0].event
        if first is not None and (self.oldest is None or first.ts < self.oldest):
            self.oldest = first.ts

    def text(self) -> str:
        return self.items[0] if len(self.items) == 1 else "[" + ",".join(self.items) + "]"
