"""The event bus: its contracts (``base``), the hub (``hub``), its recent logs and watermarks
(``recent``), a node composing a hub with a broker (``node``), the single-process broker
(``memory``) and the Redis one (``redis/``)."""

from runwatch.agents.bus.base import (
    LIFECYCLE,
    Broker,
    Bus,
    Fenced,
    Journal,
    Ownership,
    Positions,
    Publisher,
    Recent,
    Sink,
    Streams,
    Watcher,
)
from runwatch.agents.bus.hub import Hub
from runwatch.agents.bus.memory import MemoryBroker, MemoryBus
from runwatch.agents.bus.node import Node
from runwatch.agents.bus.recent import RecentLog

__all__ = [
    "LIFECYCLE",
    "Broker",
    "Bus",
    "Fenced",
    "Hub",
    "Journal",
    "MemoryBroker",
    "MemoryBus",
    "Node",
    "Ownership",
    "Positions",
    "Publisher",
    "Recent",
    "RecentLog",
    "Sink",
    "Streams",
    "Watcher",
]
