"""Presence: who is watching each run, told to its watchers as they come and go.

Kept per instance, off the event path: a subscribe or an unsubscribe changes it, a published event
never reads it, so it adds nothing to the fan-out cost of a token. Changes to one run are told at
most once per ``DEBOUNCE`` seconds (the latest state), so a crowd joining at once costs one
message per watcher, not one per pair; a change nobody would see (another socket of a principal
already watching) is told only to the new socket. A watcher is a principal: two tabs of one
person count once.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from runwatch.api.protocol import Presence, Watcher, encode

if TYPE_CHECKING:
    from runwatch.api.connection import Connection

#: Seconds between two presence messages about one run, at most.
DEBOUNCE = 0.05
#: Watchers named in a presence message (``count`` says how many there are in all).
MAX_SHOWN = 50


def watcher_of(conn: Connection) -> Watcher:
    principal = conn.principal
    if principal is None or principal.source == "off":  # nobody is known: each socket is someone
        return Watcher(id=f"connection:{conn.id}", name="anonymous")
    return Watcher(id=principal.id, name=principal.name)


class PresenceBoard:
    def __init__(self) -> None:
        #: run id → the connections subscribed to it here, in the order they joined.
        self._runs: dict[str, dict[str, Connection]] = {}
        self._due: set[str] = set()
        #: run id → the last presence message told, and the connections that have it.
        self._told: dict[str, tuple[str, set[str]]] = {}

    def join(self, run_id: str, conn: Connection) -> None:
        watching = self._runs.setdefault(run_id, {})
        if conn.id not in watching:
            watching[conn.id] = conn
            self._changed(run_id)

    def leave(self, run_id: str, conn: Connection) -> None:
        watching = self._runs.get(run_id)
        if watching is not None and watching.pop(conn.id, None) is not None:
            if not watching:
                del self._runs[run_id]
                self._told.pop(run_id, None)
            self._changed(run_id)

    def of(self, run_id: str) -> Presence:
        """Who watches ``run_id`` now."""
        unique: dict[str, Watcher] = {}
        for conn in self._runs.get(run_id, {}).values():
            w = watcher_of(conn)
            unique.setdefault(w.id, w)
        watchers = list(unique.values())
        return Presence(run=run_id, watchers=watchers[:MAX_SHOWN], count=len(watchers))

    def _changed(self, run_id: str) -> None:
        if run_id not in self._due:
            self._due.add(run_id)
            asyncio.get_running_loop().call_later(DEBOUNCE, self._announce, run_id)

    def _announce(self, run_id: str) -> None:
        self._due.discard(run_id)
        watching = self._runs.get(run_id)
        if not watching:
            return
        message = encode(self.of(run_id))
        last, told = self._told.get(run_id, ("", set()))
        if message != last:
            told = set()
        for conn_id, conn in watching.items():
            if conn_id not in told:
                conn.post(message)
        self._told[run_id] = (message, set(watching))
