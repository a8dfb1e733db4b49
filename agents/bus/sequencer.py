"""Positions assigned in this process: a run's next ``seq`` taken from its log in the hub, the event
encoded once, then handed to the journal (or shown at once, without one) and to the hub's sinks.

Both brokers publish through a ``Sequencer``: the memory broker for every run, the Redis broker for
the runs this instance owns. How a log this process does not hold yet is opened (a new run's, or
one continuing from the journal's head) is the broker's: ``open_log``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from runwatch.agents.bus.base import Durable, Journal
from runwatch.agents.bus.hub import Hub
from runwatch.agents.bus.recent import RecentLog
from runwatch.agents.events import Event, Published, RunQueued, encode

#: ``open_log(run_id, new)``: the log of a run the hub does not hold, installed in the hub; ``new``
#: when the event is the run's ``run.queued``.
OpenLog = Callable[[str, bool], Awaitable[RecentLog]]


class Sequencer:
    """See the module docstring. ``durable`` is called with each event when there is no journal."""

    __slots__ = ("_durable", "_hub", "_journal", "_logs", "_open_log", "_sinks")

    def __init__(self, hub: Hub, journal: Journal | None, *, open_log: OpenLog, durable: Durable) -> None:
        self._hub = hub
        self._journal = journal
        self._open_log = open_log
        self._durable = durable
        # The hub's own dict and list (never rebound): one lookup fewer per publish.
        self._logs = hub.logs
        self._sinks = hub.sinks

    async def publish(self, event: Event) -> Published:
        run_id = event.run_id
        ring = self._logs.get(run_id)
        if ring is None:
            ring = await self._open_log(run_id, isinstance(event, RunQueued))
        event.seq = ring.head + 1
        event.ts = time.time()
        published = Published(run_id, event.seq, event.__struct_config__.tag, encode(event), event)
        hub = self._hub
        hub.append(ring, published)
        journal = self._journal
        if journal is None:
            self._durable((published,))
        else:
            journal.append(published)
        for sink in self._sinks:
            try:
                sink.accept(published)
            except Exception as exc:
                hub.report(sink, "bus.sink_failed", exc)
        for sink in self._sinks:
            try:
                await sink.ready()
            except Exception as exc:
                hub.report(sink, "bus.sink_failed", exc)
        if journal is not None:
            await journal.ready()
        return published
