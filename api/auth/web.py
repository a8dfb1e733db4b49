"""Authentication on Litestar: a middleware that finds every request's principal, the guards that
say which role a handler needs, and the Origin and CSRF checks.

The middleware never refuses by itself: it records the principal (or why the credential presented
was refused) and the handler's guard decides, so a refusal is the same ``ErrorBody`` on every
route, and a WebSocket can be accepted and then closed with a code browsers can read (4401).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import structlog
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.handlers import BaseRouteHandler
from litestar.middleware.authentication import AbstractAuthenticationMiddleware, AuthenticationResult

from runwatch.agents.errors import Forbidden, Unauthenticated
from runwatch.agents.identity import DEFAULT_TENANT, NOBODY, Principal, Role
from runwatch.api.auth.authenticator import SESSION_COOKIE, AuthFailed
from runwatch.api.auth.tokens import same_secret
from runwatch.api.settings.config import Settings

log = structlog.get_logger()

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: The offline model's own endpoint, where this process's runs present its model key.
OFFLINE_MODEL_PATH = "/v1/"
#: Who this process's runs are when they call its offline model with the key only they hold.
RUNNER = Principal(id="runner", name="this server's runs", tenant=DEFAULT_TENANT, role=Role.VIEWER, source="runner")


class AuthMiddleware(AbstractAuthenticationMiddleware):
    """Sets ``connection.user`` to the ``Principal`` (or None) and ``connection.auth`` to the
    ``AuthFailed`` of a refused credential (or None). On the offline model's ``/v1/``, the runtime's
    ``model_key`` (a random secret made at start, which only this process's own model client
    sends, over its Unix socket or the TCP port) is ``RUNNER``; with ``offline_model_open``, nobody
    is asked for anything there."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, exclude_http_methods=(), **kwargs)

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        state = connection.app.state
        settings: Settings = state.settings
        if not settings.auth.on:
            return AuthenticationResult(user=NOBODY, auth=None)
        headers = connection.headers
        if connection.scope["path"].startswith(OFFLINE_MODEL_PATH):
            if settings.offline_model.open:
                return AuthenticationResult(user=None, auth=None)
            header = headers.get("authorization", "")
            if state.model_key and header[:7].lower() == "bearer " and same_secret(header[7:].strip(), state.model_key):
                return AuthenticationResult(user=RUNNER, auth=None)
        if connection.scope["path"] == "/metrics" and settings.metrics.token:
            header = headers.get("authorization", "")
            if header[:7].lower() == "bearer " and same_secret(header[7:].strip(), settings.metrics.token):
                return AuthenticationResult(user=None, auth=None)  # the scrape token: see observability.py
        ticket = None
        if connection.scope["type"] == "websocket" and origin_allowed(headers, settings):
            ticket = connection.query_params.get("ticket")  # (a refused origin must not use one up)
        try:
            principal = await state.auth.authenticate(headers, connection.cookies, ticket)
        except AuthFailed as exc:
            return AuthenticationResult(user=None, auth=exc)
        except Exception as exc:  # a credential nobody expected (bytes where text should be …)
            log.warning("auth.unreadable_credential", error=type(exc).__name__)
            return AuthenticationResult(user=None, auth=state.auth.failed("malformed", "the credential cannot be read"))
        if principal is not None:
            structlog.contextvars.bind_contextvars(principal=principal.id)
        return AuthenticationResult(user=principal, auth=None)


def principal_of(connection: ASGIConnection, metrics: Any = None) -> Principal:
    """The connection's principal; raises ``Unauthenticated`` saying what was wrong."""
    principal = connection.scope.get("user")
    if principal is not None:
        return principal
    failure = connection.scope.get("auth")
    if isinstance(failure, AuthFailed):
        raise Unauthenticated(failure.message)
    if metrics is not None:
        metrics.auth_failures.labels("missing").inc()
    raise Unauthenticated(
        "sign in: send 'Authorization: Bearer <key or token>' (or log in on the dashboard); "
        "on the server's machine, `runwatch run` finds the local admin key by itself"
    )


def requires(role: Role):
    """A guard: the request needs a principal with ``role`` (or a higher one); a cookie session's
    state-changing request must also pass the CSRF check."""

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # (async: no thread hop)
        state = connection.app.state
        principal = principal_of(connection, state.metrics)
        if not principal.can(role):
            raise Forbidden(f"this needs the {role.value} role; {principal.id} is {principal.role.value}")
        if connection.scope["type"] == "http" and connection.scope["method"] in UNSAFE_METHODS:
            check_csrf(connection, state.settings, principal)

    guard.__name__ = f"requires_{role.value}"
    return guard


def check_csrf(connection: ASGIConnection, settings: Settings, principal: Principal) -> None:
    """Refuse a state-changing request a browser could have been made to send from another site.

    Every such request must be JSON (``Content-Type: application/json``): a cross-site form or
    ``text/plain`` POST cannot set that without a CORS preflight, which is refused. Requests the
    browser's cookie authenticates must also come from an allowed origin (``Origin``, else
    ``Sec-Fetch-Site``). The cookie itself is ``SameSite=Strict`` besides.
    """
    headers = connection.headers
    length = headers.get("content-length")
    has_body = (length is not None and length != "0") or "transfer-encoding" in headers
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if (has_body or principal.source == "session") and content_type != "application/json":
        raise Forbidden("state-changing requests must be JSON: send 'Content-Type: application/json'")
    if principal.source == "session" or principal.source == "off":
        if not origin_allowed(headers, settings):
            raise Forbidden("this request comes from a page on another origin; it is refused (CSRF)")
        if headers.get("sec-fetch-site") == "cross-site":
            raise Forbidden("this request comes from another site; it is refused (CSRF)")


def is_https(connection: ASGIConnection) -> bool:
    """Whether the client reached us over TLS (directly, or through a proxy saying so)."""
    return connection.url.scheme in ("https", "wss") or connection.headers.get("x-forwarded-proto") == "https"


def session_cookie(connection: ASGIConnection, value: str, session: Principal) -> Cookie:
    """The dashboard's session cookie: HttpOnly, SameSite=Strict, Secure over TLS, gone when the
    session expires."""
    return Cookie(
        key=SESSION_COOKIE,
        value=value,
        max_age=max(1, int((session.expires_at or 0) - time.time())),
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_https(connection),
    )


def origin_allowed(headers: Any, settings: Settings) -> bool:
    """A request with no ``Origin`` (not a browser's), or from our own origin (the ``Host`` it was
    sent to), or from one of ``RUNWATCH_ALLOWED_ORIGINS``."""
    origin = headers.get("origin")
    if origin is None:
        return True
    if "*" in settings.http.allowed_origins or origin in settings.http.allowed_origins:
        return True
    host = headers.get("host")
    if origin == "null" or not host:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()
