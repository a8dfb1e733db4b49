"""Where given values come from — the TOML config file, the environment, command-line flags — each
with how to change it, for the message that refuses it (``change port in runwatch.toml``,
``set RUNWATCH_PORT to another value``, ``pass --port with another value``)."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from runwatch.api.settings.base import ConfigError
from runwatch.api.settings.catalog import Catalog


class Given(NamedTuple):
    """A value for a setting, as given, and how to change it."""

    value: Any
    where: str


def from_file(path: str | Path | None, catalog: Catalog) -> dict[str, Given]:
    """The settings of a flat TOML file (keys as the settings' names; prices may be a ``[prices]`` table)."""
    if not path:
        return {}
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    if isinstance(data.get("prices"), dict):  # a [prices] table in the config file
        data["prices"] = json.dumps(data["prices"])
    unknown = [key for key in data if key not in catalog]
    if unknown:
        raise ConfigError(f"config file {path}: unknown settings {', '.join(sorted(unknown))}")
    return {key: Given(value, f"change {key} in {path}") for key, value in data.items()}


def from_env(environ: Mapping[str, str], catalog: Catalog) -> dict[str, Given]:
    """The settings whose environment variables are set (to something: an empty one is unset)."""
    return {
        entry.key: Given(environ[entry.env], f"set {entry.env} to another value")
        for entry in catalog
        if environ.get(entry.env)
    }


def from_flags(overrides: Mapping[str, Any], catalog: Catalog) -> dict[str, Given]:
    """The settings given as flags, by name (``None``: the flag was not passed)."""
    return {
        key: Given(value, f"pass {catalog[key].flag or '--' + key.replace('_', '-')} with another value")
        for key, value in overrides.items()
        if value is not None
    }
