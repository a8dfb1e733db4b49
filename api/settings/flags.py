"""The command-line side of settings: the flags of the settings that have one (``serve`` takes them
all, ``migrate`` and ``keys`` the database's), ``--config``, and the list of environment variables
``serve --help`` ends with — all read from the settings' metadata."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from runwatch.api.settings.base import number
from runwatch.api.settings.config import CATALOG, ConfigError, Settings, load_settings

#: The end of ``runwatch serve --help``: every environment variable, with its help.
ENVIRONMENT_HELP = "Every setting can also come from the environment or a TOML file (--config):\n" + "\n".join(
    f"  {entry.env:<32} {entry.help}" for entry in CATALOG
)


def add_setting_flags(parser: argparse.ArgumentParser, *keys: str) -> None:
    """``--config``, and the flags of the settings named by ``keys`` (of every setting that has one if none)."""
    parser.add_argument("--config", help="TOML config file (also RUNWATCH_CONFIG)")
    for entry in CATALOG:
        if entry.flag is None or (keys and entry.key not in keys):
            continue
        default = entry.field.default  # (none shown for one made by a factory: its help says what it is)
        shown = "" if default in (None, "", msgspec.NODEFAULT) else f"; default {number(default)}"
        parser.add_argument(
            entry.flag,
            dest=entry.key,
            type=entry.kind if entry.kind in (int, float) else str,
            choices=list(entry.choices) or None,
            metavar=None if entry.choices else entry.flag.removeprefix("--").upper().replace("-", "_"),
            help=f"{entry.help} ({entry.env}{shown})",
        )


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings' flags of ``args`` by setting name (``None`` for one not passed), for ``load_settings``."""
    return {entry.key: getattr(args, entry.key) for entry in CATALOG if entry.flag and hasattr(args, entry.key)}


def settings_of(args: argparse.Namespace) -> Settings | None:
    """The settings a command's flags, environment and config file give; None once a one-line
    error saying what is wrong has gone to stderr (the command then exits 2)."""
    try:
        return load_settings(given_flags(args), config_file=args.config)
    except ConfigError as exc:
        print(f"runwatch: {exc}", file=sys.stderr)
        return None
