"""The fast lane: frames for caught-up watchers, built once per content and event-loop iteration.

When a run publishes, every caught-up watcher of it is owed the same event; when several events
land in one iteration, watchers with the same subscriptions are owed the same batch. ``FastLane``
builds each such frame's wire bytes once (``SharedFrame``) and, once per iteration, has every
watcher that got more than its first event write the rest as one frame (see ``api.connection``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from runwatch.agents.bus import Recent
from runwatch.agents.events import Published
from runwatch.api.ws.framing import text_frame

if TYPE_CHECKING:
    from runwatch.api.ws.connection import Connection

#: What a frame carries: ``(stream, after, head)`` for each stream with events in it.
FrameKey = tuple[tuple[str, int, int], ...]


class SharedFrame:
    """A frame's wire bytes, made once and written to every watcher owed exactly these events."""

    __slots__ = ("data", "events", "oldest", "size")

    def __init__(self, batches: list[list[Published]]) -> None:
        items = [p.data for batch in batches for p in batch]
        payload = items[0] if len(items) == 1 else b"[" + b",".join(items) + b"]"
        self.data = text_frame(payload)
        self.events = len(items)
        self.size = sum(len(item) for item in items)
        starts = [batch[0].event.ts for batch in batches if batch[0].event is not None]
        self.oldest = min(starts) if starts else None


class FastLane:
    """Writes every watcher that got more than one event in an event-loop iteration, once, at its end.

    Also caches the iteration's frames by content: ``((stream, after, head), ...)``.
    """

    def __init__(self) -> None:
        self._marked: list[Connection] = []
        #: Watchers owed more than their first event; each is added once (its own ``_dirty`` flag).
        self._dirty: list[Connection] = []
        self._frames: dict[FrameKey, SharedFrame | None] = {}
        self._scheduled = False

    def mark(self, conn: Connection) -> None:
        self._marked.append(conn)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._run)

    def dirty(self, conn: Connection) -> None:
        self._dirty.append(conn)

    def frame(self, key: FrameKey, bus: Recent) -> SharedFrame | None:
        """The frame of these events, built on first use in this iteration; None if the bus lost some."""
        try:
            return self._frames[key]
        except KeyError:
            pass
        batches: list[list[Published]] | None = []
        for stream, after, head in key:
            batch = bus.recent(stream, after, head - after)
            if not batch or len(batch) != head - after:
                batches = None
                break
            batches.append(batch)
        frame = self._frames[key] = SharedFrame(batches) if batches else None
        return frame

    def _run(self) -> None:
        marked, dirty = self._marked, self._dirty
        self._marked, self._dirty = [], []
        self._scheduled = False
        for conn in marked:
            conn.unmark()
        for conn in dirty:
            conn.send_new()
        self._frames.clear()
