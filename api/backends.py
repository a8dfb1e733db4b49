"""The database backends the settings name: SQLite in the data folder, or PostgreSQL at
``database_url``. The one place that picks them — ``runwatch serve`` (the runtime), ``runwatch
keys`` and ``runwatch migrate`` all make theirs here; each opens and closes what it makes."""

from __future__ import annotations

from runwatch.agents.store import PostgresStore, SQLiteStore, Store
from runwatch.agents.store.credentials import Credentials, PostgresCredentials, SQLiteCredentials
from runwatch.api.settings.config import Settings


def new_store(settings: Settings) -> Store:
    """The run store (not opened yet: ``open()`` creates or migrates its schema)."""
    return PostgresStore(settings.database_url or "") if settings.postgres else SQLiteStore(settings.database)


def new_credentials(settings: Settings) -> Credentials:
    """The API keys, sessions and server secrets, in the same database as the store."""
    if settings.postgres:
        return PostgresCredentials(settings.database_url or "")
    return SQLiteCredentials(settings.database)
