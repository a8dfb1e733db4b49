"""Settings: defaults, then a TOML config file, then environment variables, then command-line flags.

``Settings`` is one frozen struct of sections (api/settings/sections.py, access.py); each field says
its environment variable, help, flag and range in its metadata, and ``msgspec.convert`` checks every
value against them. Secrets (the OpenAI key, the JWT secret, …) come only from the environment or the
config file, never from flags, and no repr shows them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from runwatch.api.settings.access import HTTP, JWT, OIDC, Auth, Limits, Metrics
from runwatch.api.settings.base import ConfigError
from runwatch.api.settings.catalog import Catalog
from runwatch.api.settings.checks import CHECKS, MAX_SOCKET_PATH
from runwatch.api.settings.sections import (
    Agents,
    Bus,
    Logging,
    Model,
    OfflineModel,
    Redis,
    Runs,
    Server,
    Store,
    WebSocket,
)
from runwatch.api.settings.sources import from_env, from_file, from_flags
from runwatch.api.settings.values import parse

__all__ = ["CATALOG", "MAX_SOCKET_PATH", "ConfigError", "Settings", "load_settings"]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ``runwatch serve`` (and ``keys``, ``migrate``) is configured by, by feature."""

    server: Server = msgspec.field(default_factory=Server)
    store: Store = msgspec.field(default_factory=Store)
    redis: Redis = msgspec.field(default_factory=Redis)
    model: Model = msgspec.field(default_factory=Model)
    offline_model: OfflineModel = msgspec.field(default_factory=OfflineModel)
    agents: Agents = msgspec.field(default_factory=Agents)
    runs: Runs = msgspec.field(default_factory=Runs)
    bus: Bus = msgspec.field(default_factory=Bus)
    ws: WebSocket = msgspec.field(default_factory=WebSocket)
    auth: Auth = msgspec.field(default_factory=Auth)
    jwt: JWT = msgspec.field(default_factory=JWT)
    oidc: OIDC = msgspec.field(default_factory=OIDC)
    metrics: Metrics = msgspec.field(default_factory=Metrics)
    http: HTTP = msgspec.field(default_factory=HTTP)
    limits: Limits = msgspec.field(default_factory=Limits)
    logging: Logging = msgspec.field(default_factory=Logging)

    @property
    def model_base_url(self) -> str:
        """Where runs reach their model: the offline model on our own port, or the configured endpoint."""
        if self.model.offline:
            return self.server.public_url + "/v1"
        return self.model.openai_base_url or "https://api.openai.com/v1"

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never be shown: every secret setting, and the passwords in the URLs of the
        model endpoint, the database and Redis."""
        sections = (getattr(self, name) for name in self.__struct_fields__)
        return tuple(dict.fromkeys(s for section in sections for s in section.secret_values()))


#: Every setting, read from ``Settings``.
CATALOG = Catalog(Settings)


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings from the config file (``--config`` or ``RUNWATCH_CONFIG``), env and flags
    (``overrides``, by setting name; ``None`` for a flag not passed), each overriding the one before."""
    environ = os.environ if environ is None else environ
    given = {
        **from_file(config_file or environ.get("RUNWATCH_CONFIG"), CATALOG),
        **from_env(environ, CATALOG),
        **from_flags(overrides or {}, CATALOG),
    }
    settings: Settings = CATALOG.build({key: parse(CATALOG[key], g.value, g.where) for key, g in given.items()})
    for check in CHECKS:
        check(settings)
    return settings
