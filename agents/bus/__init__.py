"""The event bus: a contract (``Bus``) and its backends."""

from runwatch.agents.bus.base import LIFECYCLE, Bus, RingLog, Sink, Watcher
from runwatch.agents.bus.memory import MemoryBus

__all__ = ["LIFECYCLE", "Bus", "MemoryBus", "RingLog", "Sink", "Watcher"]
