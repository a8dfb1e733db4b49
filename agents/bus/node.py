"""A node: one process's bus, a ``Hub`` and a ``Broker`` held side by side (centrifuge's ``node.go``).

Neither part inherits or reaches into the other: the broker appends to the hub's logs and tells it
what became visible; the node gives consumers the one ``Bus`` they are typed on, and tells the
broker when a stream gets its first watcher here or loses its last (so a shared broker follows it).

The calls of the hot path are the parts' own bound methods, set once here: ``node.publish`` *is*
``broker.publish`` and ``node.recent`` *is* ``hub.recent``, so the composition costs no call, and
no allocation, per event.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Generic, TypeVar

from runwatch.agents.bus.base import LIFECYCLE, Broker, Sink, Watcher
from runwatch.agents.bus.hub import Hub
from runwatch.agents.events import Event, Published

B = TypeVar("B", bound=Broker)


class Node(Generic[B]):
    """A ``base.Bus``. ``hub`` and ``broker`` are its parts, for the composition root (a concrete
    broker's own doors, such as the Redis broker's ownership, are reached through ``broker``)."""

    __slots__ = (
        "add_sink",
        "broker",
        "first",
        "head",
        "hub",
        "position",
        "publish",
        "read",
        "recent",
        "replay",
        "settled",
        "settled_all",
    )

    publish: Callable[[Event], Coroutine[Any, Any, Published]]
    read: Callable[[str, int, int], Coroutine[Any, Any, list[Published]]]
    replay: Callable[[str, int, int], Coroutine[Any, Any, list[Published]]]
    position: Callable[[str], Coroutine[Any, Any, int]]
    recent: Callable[[str, int, int], list[Published] | None]
    head: Callable[[str], int]
    first: Callable[[str], int]
    settled: Callable[[str], Coroutine[Any, Any, None]]
    settled_all: Callable[[Iterable[str]], Coroutine[Any, Any, None]]
    add_sink: Callable[[Sink], None]

    def __init__(self, hub: Hub, broker: B) -> None:
        self.hub = hub
        self.broker = broker
        self.publish = broker.publish
        self.read = broker.read
        self.replay = broker.replay
        self.position = broker.position
        self.recent = hub.recent
        self.head = hub.head
        self.first = hub.first
        self.settled = hub.settled
        self.settled_all = hub.settled_all
        self.add_sink = hub.add_sink

    async def start(self) -> None:
        await self.broker.start()

    async def close(self) -> None:
        await self.broker.close()
        self.hub.close()

    @property
    def epoch(self) -> str:
        return self.broker.epoch

    @property
    def feed_epoch(self) -> str:
        return self.broker.feed_epoch

    def epoch_of(self, stream: str) -> str:
        return self.broker.feed_epoch if stream == LIFECYCLE else self.broker.epoch

    @property
    def memory_used(self) -> int:
        return self.hub.memory_used

    @property
    def freed(self) -> int:
        return self.hub.freed

    def watch(self, stream: str, watcher: Watcher) -> None:
        self.hub.watch(stream, watcher)
        self.broker.watched(stream)

    def unwatch(self, stream: str, watcher: Watcher) -> None:
        self.hub.unwatch(stream, watcher)
        if not self.hub.watched(stream):
            self.broker.unwatched(stream)
