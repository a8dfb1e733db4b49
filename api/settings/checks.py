"""What one setting's type and range cannot say: URLs of the right scheme, a socket path that fits,
a price table that parses, settings that need each other. Each check is one small function run in
order on the loaded ``Settings``; the first that fails stops ``serve`` with its one line."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from runwatch.agents.loop.prices import PriceError, parse_prices
from runwatch.api.settings.base import ConfigError

if TYPE_CHECKING:
    from runwatch.api.settings.config import Settings

#: ``sun_path`` holds 108 bytes on Linux (104 on macOS) with its terminating NUL: keep under both.
MAX_SOCKET_PATH = 100


def model_socket(settings: Settings) -> None:
    path = settings.offline_model.socket
    if path not in ("auto", "off") and not (os.path.isabs(path) and len(os.fsencode(path)) <= MAX_SOCKET_PATH):
        raise ConfigError(
            f"model_socket must be auto, off or an absolute path of at most {MAX_SOCKET_PATH} bytes,"
            f" got {path!r}; check RUNWATCH_MODEL_SOCKET"
        )


def database_url(settings: Settings) -> None:
    url = settings.store.database_url
    if url and "://" in url and not settings.store.postgres and not url.startswith("sqlite://"):
        raise ConfigError(
            "database_url must be postgresql://user@host/db, sqlite:///path or a path; "
            "check RUNWATCH_DATABASE_URL or --database"
        )


def redis_url(settings: Settings) -> None:
    url = settings.redis.url
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("redis_url must be redis://host:port/db (or rediss://); check RUNWATCH_REDIS_URL or --redis")


def prices(settings: Settings) -> None:
    try:
        parse_prices(settings.model.prices)
    except PriceError as exc:
        raise ConfigError(f"{exc}; check RUNWATCH_PRICES") from None


def jwt_secret(settings: Settings) -> None:
    if settings.jwt.secret is not None and len(settings.jwt.secret.encode()) < 32:
        raise ConfigError("RUNWATCH_JWT_SECRET must be at least 32 bytes (HS256 wants a key as long as its hash)")


def jwt_issuer_and_audience(settings: Settings) -> None:
    jwt = settings.jwt
    if (jwt.secret or jwt.jwks) and not (jwt.issuer and jwt.audience):
        raise ConfigError(
            "JWTs are accepted only from a named issuer for a named audience: set RUNWATCH_JWT_ISSUER and "
            "RUNWATCH_JWT_AUDIENCE (another application's tokens from the same provider must not work here)"
        )


def oidc_client(settings: Settings) -> None:
    if settings.oidc.issuer and not settings.oidc.client_id:
        raise ConfigError("RUNWATCH_OIDC_ISSUER needs RUNWATCH_OIDC_CLIENT_ID (and usually a client secret)")


def _host_entry(host: str) -> bool:
    """An entry of ``allowed_hosts``: ``*``, a name, ``*.`` and a name, or an IP address."""
    if host == "*":
        return True
    try:
        ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
        return True
    except ValueError:
        name = host.removeprefix("*.")
        return re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?", name) is not None


def allowed_hosts(settings: Settings) -> None:
    for host in settings.http.allowed_hosts:
        if not _host_entry(host):
            hint = "like example.com, *.example.com, 10.0.0.5 or *; check RUNWATCH_ALLOWED_HOSTS"
            raise ConfigError(f"allowed host {host!r} must be a name or address without scheme or port, {hint}")


def origins(settings: Settings) -> None:
    for origin in settings.http.allowed_origins + settings.http.cors_origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ConfigError(f"origin {origin!r} must look like https://host[:port]; check RUNWATCH_ALLOWED_ORIGINS")


def offline_budget(settings: Settings) -> None:
    answer, inflight = settings.offline_model.max_answer_bytes, settings.offline_model.max_inflight_bytes
    if inflight < answer:
        raise ConfigError(
            f"offline_max_inflight_bytes ({inflight}) must be at least offline_max_answer_bytes ({answer}),"
            " or the largest answer could never be served; check RUNWATCH_OFFLINE_MAX_INFLIGHT_BYTES and"
            " RUNWATCH_OFFLINE_MAX_ANSWER_BYTES"
        )


#: Run in this order by ``load_settings``.
CHECKS: tuple[Callable[[Settings], None], ...] = (
    model_socket,
    database_url,
    redis_url,
    prices,
    jwt_secret,
    jwt_issuer_and_audience,
    oidc_client,
    allowed_hosts,
    origins,
    offline_budget,
)
