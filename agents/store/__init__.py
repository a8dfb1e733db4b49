"""Durable history: a contract (``Store``) and its backends."""

from runwatch.agents.store.base import RunPage, RunSummary, Store
from runwatch.agents.store.sqlite import SQLiteStore

__all__ = ["RunPage", "RunSummary", "SQLiteStore", "Store"]
