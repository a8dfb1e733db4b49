"""The sections of ``Settings`` about who may reach the server and how much: authentication, JWTs,
single sign-on, the metrics scrape, browsers' origins and hosts, and the limits (docs/security.md)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from runwatch.api.settings.base import Section, setting
from runwatch.api.settings.sections import KiB, OnOff


class Auth(Section):
    """Whether requests need a principal, and how long a dashboard login lasts."""

    mode: Annotated[
        OnOff,
        setting("RUNWATCH_AUTH", "on (default): every request needs a principal; off: none do (tests and demos only)"),
    ] = "on"
    session_hours: Annotated[float, setting("RUNWATCH_SESSION_HOURS", "hours a dashboard login lasts", gt=0)] = 12.0
    login_link: Annotated[
        Literal["auto", "on", "off"],
        setting("RUNWATCH_LOGIN_LINK", "print a one-time dashboard login link at start: auto (on a terminal), on, off"),
    ] = "auto"
    session_secret: Annotated[
        str | None,
        setting(
            "RUNWATCH_SESSION_SECRET", "signs the OIDC login state cookie (default: in the database)", secret="value"
        ),
    ] = None

    @property
    def on(self) -> bool:
        return self.mode == "on"


class JWT(Section):
    """The JWTs of an identity provider that are accepted as principals."""

    secret: Annotated[
        str | None,
        setting("RUNWATCH_JWT_SECRET", "HS256 secret of the JWTs to accept (env or config file only)", secret="value"),
    ] = None
    jwks: Annotated[
        str | None,
        setting("RUNWATCH_JWT_JWKS", "URL or file of the JWKS whose RS256/ES256 keys sign the JWTs to accept"),
    ] = None
    issuer: Annotated[str | None, setting("RUNWATCH_JWT_ISSUER", "required iss of JWTs")] = None
    audience: Annotated[str | None, setting("RUNWATCH_JWT_AUDIENCE", "required aud of JWTs")] = None
    tenant_claim: Annotated[str, setting("RUNWATCH_JWT_TENANT_CLAIM", "JWT claim naming the tenant")] = "tenant"
    roles_claim: Annotated[
        str, setting("RUNWATCH_JWT_ROLES_CLAIM", "JWT claim listing the roles (viewer, operator, admin)")
    ] = "roles"


class OIDC(Section):
    """The OpenID Connect provider of dashboard logins (single sign-on)."""

    issuer: Annotated[
        str | None, setting("RUNWATCH_OIDC_ISSUER", "OpenID Connect provider for dashboard logins (its issuer URL)")
    ] = None
    client_id: Annotated[str | None, setting("RUNWATCH_OIDC_CLIENT_ID", "runwatch's client id at that provider")] = None
    client_secret: Annotated[
        str | None,
        setting("RUNWATCH_OIDC_CLIENT_SECRET", "its client secret (env or config file only)", secret="value"),
    ] = None
    scopes: Annotated[str, setting("RUNWATCH_OIDC_SCOPES", "scopes asked for at login")] = "openid profile email"


class Metrics(Section):
    """Who may scrape ``/metrics``."""

    token: Annotated[
        str | None,
        setting("RUNWATCH_METRICS_TOKEN", "bearer token Prometheus scrapes /metrics with", secret="value"),
    ] = None
    open: Annotated[
        bool,
        setting("RUNWATCH_METRICS_OPEN", "true: /metrics needs no token (only behind a private network)"),
    ] = False


class HTTP(Section):
    """Which browsers' pages and which ``Host`` names are answered."""

    allowed_origins: Annotated[
        list[str],
        setting("RUNWATCH_ALLOWED_ORIGINS", "comma-separated origins (besides ours) whose pages may connect"),
    ] = msgspec.field(default_factory=list)
    allowed_hosts: Annotated[
        list[str],
        setting("RUNWATCH_ALLOWED_HOSTS", "Host names answered besides loopback (default: any; auth off: none)"),
    ] = msgspec.field(default_factory=list)
    cors_origins: Annotated[
        list[str],
        setting("RUNWATCH_CORS_ORIGINS", "comma-separated origins CORS allows (default: none, CORS off)"),
    ] = msgspec.field(default_factory=list)


class Limits(Section):
    """What one principal or tenant may start, and the front door's bounds on connections and requests."""

    runs_per_minute: Annotated[
        float, setting("RUNWATCH_RUNS_PER_MINUTE", "runs one principal may start a minute", ge=1)
    ] = 60.0
    tenant_max_active: Annotated[
        int, setting("RUNWATCH_TENANT_MAX_ACTIVE", "runs one tenant may have queued or running at once", ge=1)
    ] = 100
    #: 32 KiB: a large identity provider's JWT (8 KiB with groups) and a browser's cookies for the
    #: host fit, twice over; Node allows 16 KiB, nginx 32 KiB (4 x 8 KiB lines). Browsers send
    #: more than 1 KiB.
    max_header_bytes: Annotated[
        int,
        setting("RUNWATCH_MAX_HEADER_BYTES", "largest request line and headers, in bytes; larger answers 431", ge=1024),
    ] = 32 * KiB
    #: Apache's default; browsers send about 20.
    max_headers: Annotated[
        int, setting("RUNWATCH_MAX_HEADERS", "most headers in one request; more answers 431", ge=1)
    ] = 100
    #: A request arrives whole within this (a 1 MiB body at 1 Mbit/s takes 8 s); a slow-loris
    #: connection holds its socket no longer.
    request_timeout: Annotated[
        float,
        setting("RUNWATCH_REQUEST_TIMEOUT", "seconds a request (head and body) has to arrive whole, or 408", gt=0),
    ] = 15.0
    #: Below the open-file limit ``serve`` can get (it raises its soft limit to fit; see api/front_door.py).
    max_connections: Annotated[
        int,
        setting(
            "RUNWATCH_MAX_CONNECTIONS", "connections at once, HTTP and WebSocket (see docs/security.md, Limits)", ge=1
        ),
    ] = 10_000
