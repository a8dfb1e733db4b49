"""Presence: who is watching each run, told to its watchers as they come and go.

Kept per instance, off the event path: a subscribe or an unsubscribe changes it, a published event
never reads it, so it adds nothing to the fan-out cost of a token. What it costs, stated:

* a watcher who subscribes is told who watches at once, in the frame of its ``ack`` (no frame of
  its own);
* the others are told only when the set of principals changes (two tabs of one person count once:
  another socket of someone already watching changes nothing), at most once per ``DEBOUNCE``
  seconds per run, with the latest state — a crowd joining at once costs one message per watcher,
  not one per pair;
* joining and leaving are O(1); a message names at most ``MAX_SHOWN`` principals.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runwatch.api.ws.protocol import Presence, Watcher, encode

if TYPE_CHECKING:
    from runwatch.api.ws.connection import Connection

#: Seconds between two presence messages about one run, at most.
DEBOUNCE = 0.05
#: Watchers named in a presence message (``count`` says how many there are in all).
MAX_SHOWN = 50


def watcher_of(conn: Connection) -> Watcher:
    principal = conn.principal
    if principal is None or principal.source == "off":  # nobody is known: each socket is someone
        return Watcher(id=f"connection:{conn.id}", name="anonymous")
    return Watcher(id=principal.id, name=principal.name)


@dataclass
class _Room:
    """One run's watchers here: its sockets, and its principals (in the order they came) with how
    many sockets each has on the run."""

    sockets: dict[str, tuple[Connection, str]] = field(default_factory=dict)  # conn id → (conn, principal id)
    principals: dict[str, tuple[Watcher, int]] = field(default_factory=dict)
    #: The presence message as it stands, encoded once (None: to encode again).
    message: str | None = None


class PresenceBoard:
    def __init__(self) -> None:
        self._rooms: dict[str, _Room] = {}
        self._due: set[str] = set()

    def join(self, run_id: str, conn: Connection) -> None:
        room = self._rooms.setdefault(run_id, _Room())
        if conn.id in room.sockets:
            return
        watcher = watcher_of(conn)
        room.sockets[conn.id] = (conn, watcher.id)
        known = room.principals.get(watcher.id)
        room.principals[watcher.id] = (watcher, 1 if known is None else known[1] + 1)
        if known is None:
            room.message = None
            self._changed(run_id)
        conn.post(self._message(run_id, room))  # (posted just after its ack: the same frame)

    def leave(self, run_id: str, conn: Connection) -> None:
        room = self._rooms.get(run_id)
        if room is None or (gone := room.sockets.pop(conn.id, None)) is None:
            return
        watcher, sockets = room.principals[gone[1]]
        if sockets > 1:
            room.principals[gone[1]] = (watcher, sockets - 1)
            return
        del room.principals[gone[1]]
        if not room.sockets:
            del self._rooms[run_id]
            return
        room.message = None
        self._changed(run_id)

    def of(self, run_id: str) -> Presence:
        """Who watches ``run_id`` now."""
        room = self._rooms.get(run_id)
        principals = room.principals if room is not None else {}
        shown = [w for w, _ in itertools.islice(principals.values(), MAX_SHOWN)]
        return Presence(run=run_id, watchers=shown, count=len(principals))

    def _message(self, run_id: str, room: _Room) -> str:
        if room.message is None:
            room.message = encode(self.of(run_id))
        return room.message

    def _changed(self, run_id: str) -> None:
        if run_id not in self._due:
            self._due.add(run_id)
            asyncio.get_running_loop().call_later(DEBOUNCE, self._announce, run_id)

    def _announce(self, run_id: str) -> None:
        self._due.discard(run_id)
        room = self._rooms.get(run_id)
        if room is None:
            return
        message = self._message(run_id, room)
        for conn, _ in room.sockets.values():
            conn.post(message)
