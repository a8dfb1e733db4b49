"""``runwatch keys``: create, list and revoke API keys, straight in the database."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from runwatch.api.settings.config import Settings
from runwatch.api.settings.flags import add_setting_flags, settings_of

if TYPE_CHECKING:
    from runwatch.agents.store.credentials import Credentials


def keys_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "keys",
        help="create, list and revoke API keys",
        description="Manage API keys in the database (run it where serve's database is reachable). "
        "A key is shown once, when it is created; only its hash is kept.",
    )
    keys = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = keys.add_parser("create", help="create a key and print it (once)", description="Create an API key.")
    c.add_argument("--tenant", required=True, help="the tenant whose runs the key sees and starts")
    c.add_argument(
        "--role",
        required=True,
        choices=["viewer", "operator", "admin", "agent"],
        help="what the key may do (agent: only report its own runs through the ingest API)",
    )
    c.add_argument("--name", default="", help="a name to recognise it by (shown in lists and as who started runs)")
    listing = keys.add_parser("list", help="list keys (never the keys themselves)", description="List API keys.")
    r = keys.add_parser(
        "revoke",
        help="revoke a key",
        description="Revoke an API key: within seconds it works nowhere, and sockets opened with it close (4401).",
    )
    r.add_argument("id", help="the key's id (k_…), from `runwatch keys list`")
    for action in (c, listing, r):
        add_setting_flags(action, "database_url", "data_dir")
    p.set_defaults(func=manage_keys)


def manage_keys(args: argparse.Namespace) -> int:
    import asyncio
    import re

    from runwatch.agents.identity import TENANT_PATTERN
    from runwatch.agents.store import StoreUnavailable
    from runwatch.api.logs import configure_logging

    settings = settings_of(args)
    if settings is None:
        return 2
    configure_logging("console", "warning", settings.secrets)
    if args.action == "create" and not re.match(TENANT_PATTERN, args.tenant):
        print("runwatch: --tenant must be letters, digits, '_', '.' or '-' (at most 64)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_act(settings, args))
    except StoreUnavailable as exc:
        print(f"runwatch: {exc}", file=sys.stderr)
        return 2


async def _act(settings: Settings, args: argparse.Namespace) -> int:
    """Open the database (made or migrated first), do the action, close it."""
    from runwatch.api.backends import open_credentials, open_store

    store = open_store(settings)
    await store.open()  # creates or migrates the schema, credentials included
    await store.close()
    creds = open_credentials(settings)
    await creds.open()
    try:
        if args.action == "create":
            return await _create(creds, args)
        if args.action == "list":
            return await _list(creds)
        return await _revoke(creds, args.id)
    finally:
        await creds.close()


async def _create(creds: Credentials, args: argparse.Namespace) -> int:
    from runwatch.agents.identity import Role
    from runwatch.api.auth.authenticator import create_key

    secret, k = await create_key(creds, tenant=args.tenant, role=Role(args.role), name=args.name)
    print(secret)
    print(f"key {k.id}: tenant {k.tenant}, role {k.role}. It is shown this once: keep it now.", file=sys.stderr)
    return 0


async def _list(creds: Credentials) -> int:
    def day(at: float) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(at))

    rows = [
        (
            k.id,
            k.tenant,
            k.role,
            f"revoked {day(k.revoked_at)}" if k.revoked_at else "active",
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(k.created_at)),
            k.name,
        )
        for k in await creds.keys()
    ]
    print("\n".join(table(("ID", "TENANT", "ROLE", "STATE", "CREATED (UTC)", "NAME"), rows)))
    if not rows:
        print("no keys yet: `runwatch keys create --tenant T --role R` makes one", file=sys.stderr)
    return 0


async def _revoke(creds: Credentials, key_id: str) -> int:
    if not await creds.revoke(key_id, time.time()):
        print(f"runwatch: no active key {key_id!r}; see `runwatch keys list`", file=sys.stderr)
        return 1
    print(f"revoked {key_id}", file=sys.stderr)
    return 0


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """``header`` and ``rows`` as lines of columns, each as wide as its widest cell, two spaces apart."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)]
