"""The database backends the settings name: SQLite in the data folder, or PostgreSQL at
``database_url``. The one place that picks them — ``runwatch serve`` (the runtime), ``runwatch
keys`` and ``runwatch migrate`` all get theirs from ``open_store`` and ``open_credentials``, not yet
opened: each opens and closes what it gets."""

from __future__ import annotations

from runwatch.agents.store import PostgresStore, SQLiteStore, Store
from runwatch.agents.store.credentials import Credentials, PostgresCredentials, SQLiteCredentials
from runwatch.api.settings.config import Settings


def open_store(settings: Settings) -> Store:
    """The run store (not opened yet: ``open()`` creates or migrates its schema)."""
    store = settings.store
    return PostgresStore(store.database_url or "") if store.postgres else SQLiteStore(store.database)


def open_credentials(settings: Settings) -> Credentials:
    """The API keys, sessions and server secrets, in the same database as the store (not opened yet)."""
    store = settings.store
    return PostgresCredentials(store.database_url or "") if store.postgres else SQLiteCredentials(store.database)
