"""Durable history: a contract (``Store``) and its backends."""

from agents.store.base import RunPage, RunSummary, Store
from agents.store.sqlite import SQLiteStore

__all__ = ["RunPage", "RunSummary", "SQLiteStore", "Store"]
