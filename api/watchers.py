"""The watchers this process serves — open WebSocket connections and SSE streams — and the two
moments that end them all: the server closing, the broker lost.

One object, made by the composition root and handed to the transports and the watchdog: the
WebSocket endpoint adds and removes its connections, the SSE endpoint its streams; shutdown sets
``closing`` (and the ``drain_deadline`` by which watchers must have their final events); a lost
broker fires ``broker_lost``, which every WebSocket then closes on with 1012.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runwatch.api.sse.stream import SSEStream
    from runwatch.api.ws.connection import Connection


class Watchers:
    def __init__(self) -> None:
        self.connections: set[Connection] = set()
        #: Open SSE streams: the watchdog times their sends, shutdown wakes them to end at once,
        #: and their principals' connection leases are renewed.
        self.sse_streams: set[SSEStream] = set()
        #: Set once shutdown has stopped the runs (their final events are visible): SSE streams
        #: end, WebSocket connections deliver what they owe (until ``drain_deadline``) and close 1001.
        self.closing = asyncio.Event()
        self.drain_deadline = 0.0
        #: Set when the broker's connection is lost; a new event is made for the connections after.
        self.broker_lost = asyncio.Event()

    def lose_broker(self) -> None:
        """Every open WebSocket closes 1012 (reconnect); later connections wait on a fresh event."""
        lost, self.broker_lost = self.broker_lost, asyncio.Event()
        lost.set()

    def close(self, drain_deadline: float) -> None:
        """The runs have stopped: watchers get until ``drain_deadline`` (monotonic) for what they are owed."""
        self.drain_deadline = drain_deadline
        self.closing.set()
        for stream in list(self.sse_streams):
            stream.notify("*", 0)
