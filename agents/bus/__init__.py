"""The event bus: a contract (``Bus``, ``Journal``) and its backends."""

from runwatch.agents.bus.base import LIFECYCLE, Bus, Fenced, Journal, RecentLog, Sink, Watcher
from runwatch.agents.bus.memory import MemoryBus

__all__ = ["LIFECYCLE", "Bus", "Fenced", "Journal", "MemoryBus", "RecentLog", "Sink", "Watcher"]
