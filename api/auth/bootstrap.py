"""Secure by default with nothing configured: the local admin key and the one-time login URL.

On its first start with authentication on, ``runwatch serve`` creates an admin API key and keeps it
in ``<data dir>/admin.key`` (mode 0600), where ``runwatch run`` and the other client commands on
the same machine find it. The key is never logged. Every start also makes a one-time login code,
printed (not logged) as the dashboard's URL, as Jupyter does.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from runwatch.agents.identity import DEFAULT_TENANT, Role
from runwatch.agents.store.credentials import Credentials
from runwatch.api.auth.authenticator import Authenticator, create_key, key_principal
from runwatch.api.auth.tokens import KEY_PREFIX, hash_secret

ADMIN_KEY_FILE = "admin.key"


def admin_key_path(data_dir: Path) -> Path:
    return data_dir / ADMIN_KEY_FILE


def local_servers() -> Path:
    """Where ``serve`` tells this user's client commands which key a local port wants (as
    Jupyter's runtime folder does): ``$XDG_DATA_HOME/runwatch/servers`` (``~/.local/share/…``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "runwatch" / "servers"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def remember_local(port: int, key: str) -> None:
    """Leave the admin key where client commands of this user look for port ``port``; best effort."""
    try:
        _write_private(local_servers() / f"{port}.key", key + "\n")
    except OSError:
        pass


def forget_local(port: int, key: str) -> None:
    """At shutdown: take the key back, so that whatever listens on the port next does not get it."""
    path = local_servers() / f"{port}.key"
    try:
        if path.read_text().strip() == key:
            path.unlink()
    except OSError:
        pass


def local_key(port: int) -> str | None:
    """The admin key a local server on ``port`` left for this user, if any."""
    try:
        key = (local_servers() / f"{port}.key").read_text().strip()
    except OSError:
        return None
    return key if key.startswith(KEY_PREFIX) else None


def read_admin_key(data_dir: Path) -> str | None:
    """The local admin key, if this machine's data folder has one (and we may read it)."""
    try:
        key = admin_key_path(data_dir).read_text().strip()
    except OSError:
        return None
    return key if key.startswith(KEY_PREFIX) else None


async def ensure_admin_key(credentials: Credentials, data_dir: Path) -> str:
    """The local admin key: the one in the data folder while it works, else a new one written there."""
    key = read_admin_key(data_dir)
    if key is not None and await credentials.find(hash_secret(key), time.time()) is not None:
        return key
    key, _ = await create_key(credentials, tenant=DEFAULT_TENANT, role=Role.ADMIN, name="local admin")
    _write_private(admin_key_path(data_dir), key + "\n")
    return key


async def login_url(auth: Authenticator, credentials: Credentials, key: str, base_url: str) -> str:
    """The dashboard's URL with a one-time code that logs its opener in as the local admin."""
    record = await credentials.find(hash_secret(key), time.time())
    assert record is not None, "the admin key was just checked"
    code = await auth.make_code(key_principal(record))
    return f"{base_url}/?code={code}"
