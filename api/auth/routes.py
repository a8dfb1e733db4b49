"""REST for identity: log in and out of the dashboard, who am I, WebSocket tickets, and API keys."""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
from litestar import Controller, Request, delete, get, post, route
from litestar.datastructures import Cookie
from litestar.enums import HttpMethod
from litestar.params import Dependency, Parameter
from litestar.response import Response
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from runwatch.agents.errors import BadRequest, ErrorCode, Forbidden, RunwatchError, Unauthenticated
from runwatch.agents.identity import TENANT_PATTERN, Principal, Role
from runwatch.agents.store.credentials import Credentials
from runwatch.api.auth.authenticator import SESSION_COOKIE, TICKET_SECONDS, Authenticator, AuthFailed, create_key
from runwatch.api.auth.local_keys import NONCE, PROOF_PATH, proof
from runwatch.api.auth.provider import Provider
from runwatch.api.auth.web import check_csrf, origin_allowed, principal_of, requires, session_cookie
from runwatch.api.http_errors import error_responses
from runwatch.api.observability.metrics import Metrics
from runwatch.api.settings.config import Settings

#: The app state's entry holding the local admin key, once ``serve`` has made or read it.
LOCAL_ADMIN_KEY = "local_admin_key"

#: The credential store, as handlers are given it: a Protocol, which Litestar cannot check by
#: ``isinstance`` (the composition root made it; nothing to validate).
CredentialStore = Annotated[Credentials, Dependency(skip_validation=True)]


class Login(msgspec.Struct, forbid_unknown_fields=True):
    """One of: an API key, a JWT, or the one-time code ``runwatch serve`` printed."""

    key: str | None = None
    token: str | None = None
    code: str | None = None


class Me(msgspec.Struct):
    id: str
    name: str
    tenant: str
    role: str
    #: How this request authenticated: key, jwt, session, ticket, or off (authentication is off).
    source: str
    expires_at: float | None
    auth: bool


class LoginOptions(msgspec.Struct):
    #: False when authentication is off (``RUNWATCH_AUTH=off``): there is nothing to log in to.
    auth: bool
    #: True when ``GET /api/oidc/login`` logs in with the identity provider (OpenID Connect).
    oidc: bool


class Ticket(msgspec.Struct):
    #: Pass as ``/ws?ticket=…`` within ``expires_in`` seconds; it works once.
    ticket: str
    expires_in: float


class LocalProof(msgspec.Struct):
    #: HMAC-SHA256 of the nonce and of the address and port the request reached, keyed by this
    #: server's local admin key (api/auth/local_keys.py); null when it keeps none (auth off).
    proof: str | None


class NewKey(msgspec.Struct, forbid_unknown_fields=True):
    tenant: Annotated[str, msgspec.Meta(pattern=TENANT_PATTERN)]
    role: Role
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""


class KeyInfo(msgspec.Struct):
    id: str
    tenant: str
    role: str
    name: str
    created_at: float
    revoked_at: float | None = None


class CreatedKey(KeyInfo, kw_only=True):
    #: The key itself: shown this once, never again (only its hash is kept).
    key: str


def me(principal: Principal, auth: bool) -> Me:
    return Me(
        id=principal.id,
        name=principal.name,
        tenant=principal.tenant,
        role=principal.role.value,
        source=principal.source,
        expires_at=principal.expires_at,
        auth=auth,
    )


class AuthController(Controller):
    path = "/api"
    tags = ["auth"]

    @post(
        "/login",
        status_code=HTTP_200_OK,
        summary="Log in to the dashboard: a session cookie from a key, a token or a one-time code",
        responses=error_responses(ErrorCode.UNAUTHENTICATED, ErrorCode.FORBIDDEN),
    )
    async def login(self, data: Login, request: Request, settings: Settings, auth: Authenticator) -> Response[Me]:
        if not origin_allowed(request.headers, settings):
            raise Forbidden("log in from the dashboard's own origin")
        if sum(x is not None for x in (data.key, data.token, data.code)) != 1:
            raise BadRequest('send one of "key", "token" or "code"')
        if not settings.auth.on:
            raise BadRequest("authentication is off (RUNWATCH_AUTH=off): there is nothing to log in to")
        try:
            if data.code is not None:
                principal = await auth.code(data.code)
            else:
                principal = await auth.bearer(data.key if data.key is not None else data.token or "")
        except AuthFailed as exc:
            raise Unauthenticated(exc.message) from None
        value, session = await auth.make_session(principal)
        return Response(me(session, True), cookies=[session_cookie(request, value, session)])

    @route("/login", http_method=HttpMethod.OPTIONS, status_code=HTTP_204_NO_CONTENT, include_in_schema=False)
    async def allow_login(self) -> Response[None]:
        # As for /api/runs (api/rest/runs.py): Litestar's own answer would name only one handler's method.
        return Response(None, status_code=HTTP_204_NO_CONTENT, headers={"Allow": "GET, OPTIONS, POST"})

    @get("/login", summary="How one may log in here (open to anyone)")
    async def login_options(self, settings: Settings, oidc: Provider | None) -> LoginOptions:
        return LoginOptions(auth=settings.auth.on, oidc=settings.auth.on and oidc is not None)

    @post(
        "/logout",
        status_code=HTTP_204_NO_CONTENT,
        summary="Log out of the dashboard",
        response_cookies=[Cookie(key=SESSION_COOKIE, value="", max_age=0, path="/", httponly=True, samesite="strict")],
        responses=error_responses(ErrorCode.FORBIDDEN),
    )
    async def logout(self, request: Request, settings: Settings, auth: Authenticator) -> None:
        principal = request.scope.get("user")
        if principal is not None:
            check_csrf(request, settings, principal)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie and settings.auth.on:
            await auth.end_session(cookie)

    @get("/me", summary="Who this request is", responses=error_responses(ErrorCode.UNAUTHENTICATED))
    async def whoami(self, request: Request, metrics: Metrics, settings: Settings) -> Me:
        return me(principal_of(request, metrics), settings.auth.on)

    @post(
        "/ws-ticket",
        status_code=HTTP_201_CREATED,
        summary="A single-use WebSocket ticket, for browsers on other origins (/ws?ticket=…)",
        guards=[requires(Role.VIEWER)],
        responses=error_responses(ErrorCode.UNAUTHENTICATED, ErrorCode.FORBIDDEN),
    )
    async def ws_ticket(self, request: Request, auth: Authenticator) -> Ticket:
        return Ticket(ticket=await auth.make_ticket(request.user), expires_in=TICKET_SECONDS)


class KeysController(Controller):
    path = "/api/keys"
    tags = ["auth"]
    guards = [requires(Role.ADMIN)]

    @route("/", http_method=HttpMethod.OPTIONS, status_code=HTTP_204_NO_CONTENT, include_in_schema=False)
    async def allow_keys(self) -> Response[None]:
        # As for /api/runs (api/rest/runs.py): Litestar's own answer would name only one handler's method.
        return Response(None, status_code=HTTP_204_NO_CONTENT, headers={"Allow": "GET, OPTIONS, POST"})

    @get(
        "/", summary="Every API key (admin)", responses=error_responses(ErrorCode.UNAUTHENTICATED, ErrorCode.FORBIDDEN)
    )
    async def list_keys(self, credentials: CredentialStore) -> list[KeyInfo]:
        return [
            KeyInfo(
                id=k.id, tenant=k.tenant, role=k.role, name=k.name, created_at=k.created_at, revoked_at=k.revoked_at
            )
            for k in await credentials.keys()
        ]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Create an API key (admin); the answer holds the key, shown this once",
        responses=error_responses(ErrorCode.UNAUTHENTICATED, ErrorCode.FORBIDDEN),
    )
    async def create(self, data: NewKey, credentials: CredentialStore) -> CreatedKey:
        secret, k = await create_key(credentials, tenant=data.tenant, role=data.role, name=data.name)
        return CreatedKey(id=k.id, tenant=k.tenant, role=k.role, name=k.name, created_at=k.created_at, key=secret)

    @delete(
        "/{key_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke an API key (admin): within seconds it works nowhere, and its sockets close",
        responses=error_responses(ErrorCode.UNAUTHENTICATED, ErrorCode.FORBIDDEN, ErrorCode.UNKNOWN_KEY),
    )
    async def revoke(self, key_id: Annotated[str, Parameter(max_length=64)], credentials: CredentialStore) -> None:
        if not await credentials.revoke(key_id, time.time()):
            raise RunwatchError(f"no active key {key_id!r}; see GET /api/keys", code=ErrorCode.UNKNOWN_KEY)


@get(
    PROOF_PATH,
    summary="Prove this server holds its local admin key, before `runwatch run` sends it (open to anyone)",
    tags=["auth"],
    responses=error_responses(),
)
async def local_proof(
    request: Request,
    nonce: Annotated[str, Parameter(min_length=32, max_length=128, pattern="^[0-9a-f]{32,128}$")],
) -> LocalProof:
    if not NONCE.fullmatch(nonce):
        raise BadRequest("nonce must be 32 to 128 lowercase hexadecimal digits, fresh for each proof")
    key: str | None = request.app.state.get(LOCAL_ADMIN_KEY)
    server = request.scope.get("server")
    if key is None or not server or server[1] is None:  # auth off, or a Unix socket: nothing to prove
        return LocalProof(proof=None)
    return LocalProof(proof=proof(key, nonce, server[0], server[1]))
