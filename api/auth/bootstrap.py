"""Secure by default with nothing configured: the local admin key and the one-time login URL.

On its first start with authentication on, ``runwatch serve`` creates an admin API key and keeps it
in ``<data dir>/admin.key`` (mode 0600), where ``runwatch run`` and the other client commands on
the same machine find it. The key is never logged. Every start also makes a one-time login code,
printed (not logged) as the dashboard's URL, as Jupyter does. (The key's files, and how a client
command knows it may send it somewhere: ``local_keys``.)
"""

from __future__ import annotations

import time
from pathlib import Path

from runwatch.agents.identity import DEFAULT_TENANT, Role
from runwatch.agents.store.credentials import Credentials
from runwatch.api.auth.authenticator import Authenticator, create_key, key_principal
from runwatch.api.auth.local_keys import admin_key_path, read_admin_key, write_private
from runwatch.api.auth.tokens import hash_secret


async def ensure_admin_key(credentials: Credentials, data_dir: Path) -> str:
    """The local admin key: the one in the data folder while it works, else a new one written there."""
    key = read_admin_key(data_dir)
    if key is not None and await credentials.find(hash_secret(key), time.time()) is not None:
        return key
    key, _ = await create_key(credentials, tenant=DEFAULT_TENANT, role=Role.ADMIN, name="local admin")
    write_private(admin_key_path(data_dir), key + "\n")
    return key


async def login_url(auth: Authenticator, credentials: Credentials, key: str, base_url: str) -> str:
    """The dashboard's URL with a one-time code that logs its opener in as the local admin."""
    record = await credentials.find(hash_secret(key), time.time())
    assert record is not None, "the admin key was just checked"
    code = await auth.make_code(key_principal(record))
    return f"{base_url}/?code={code}"
