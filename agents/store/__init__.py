"""Durable history: a contract (``Store``) and its backends."""

from runwatch.agents.store.base import RunPage, RunQuery, RunSummary, Store, StoreUnavailable
from runwatch.agents.store.postgres import PostgresStore
from runwatch.agents.store.sqlite import SQLiteStore

__all__ = ["PostgresStore", "RunPage", "RunQuery", "RunSummary", "SQLiteStore", "Store", "StoreUnavailable"]
