"""The Authenticator: turns what a request or socket presents into a ``Principal``, or refuses it.

What it takes, in this order: ``Authorization: Bearer`` (a runwatch API key, ``rw_…``, or a JWT),
the dashboard's session cookie, and — for WebSocket handshakes only — a single-use ``?ticket=``.
It also makes sessions, tickets and one-time login codes.

Keys are looked up by the hash of the secret and cached for ``KEY_CACHE_SECONDS``: a revoked key
stops working on every instance within that time, and its open sockets are closed (4401).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from typing import Any

import msgspec
import structlog

from runwatch.agents.identity import DEFAULT_TENANT, TENANT_PATTERN, Principal, Role
from runwatch.agents.store.credentials import Credential, Credentials
from runwatch.api.auth.jwt import JWTVerifier, TokenRefused
from runwatch.api.auth.tokens import (
    CODE_PREFIX,
    KEY_PREFIX,
    SESSION_PREFIX,
    TICKET_PREFIX,
    Signer,
    hash_secret,
    new_id,
    new_secret,
)
from runwatch.api.settings.config import Settings

log = structlog.get_logger()

SESSION_COOKIE = "runwatch_session"
KEY_CACHE_SECONDS = 5.0
KEY_CACHE_SIZE = 10_000
TICKET_SECONDS = 30.0
CODE_SECONDS = 3600.0
#: The longest ``sub`` a JWT may carry (OpenID Connect's own limit: 255 ASCII characters).
MAX_SUBJECT = 255
TENANT = re.compile(TENANT_PATTERN)


class AuthFailed(Exception):
    """A credential was presented and refused; ``reason`` labels ``runwatch_auth_failures_total``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _json(text: str | None) -> Any:
    try:
        return msgspec.json.decode(text) if text else None
    except msgspec.DecodeError:
        return None


def _principal(data: Any) -> Principal | None:
    try:
        return msgspec.convert(data, Principal)
    except (msgspec.ValidationError, TypeError):
        return None


class Authenticator:
    def __init__(self, settings: Settings, credentials: Credentials, on_failure: Callable[[str], None]) -> None:
        self.settings = settings
        self.credentials = credentials
        self._on_failure = on_failure
        self.jwt = JWTVerifier(
            secret=settings.jwt.secret,
            jwks=settings.jwt.jwks,
            issuer=settings.jwt.issuer,
            audience=settings.jwt.audience,
        )
        self._signer: Signer | None = None
        #: secret hash → (principal or None for "no such key", monotonic time it was looked up).
        self._keys: dict[str, tuple[Principal | None, float]] = {}
        #: key id → (revoked, monotonic time it was checked).
        self._revoked: dict[str, tuple[bool, float]] = {}

    async def start(self) -> None:
        """Load the session-signing secret every instance shares (made once, kept in the database)."""
        key = self.settings.auth.session_secret or await self.credentials.secret("session", secrets.token_hex(32))
        self._signer = Signer(key)

    @property
    def signer(self) -> Signer:
        assert self._signer is not None, "the authenticator is not started"
        return self._signer

    def failed(self, reason: str, message: str) -> AuthFailed:
        self._on_failure(reason)
        return AuthFailed(reason, message)

    # -- what a request presents ------------------------------------------------------------------

    async def authenticate(self, headers: Any, cookies: dict[str, str], ticket: str | None = None) -> Principal | None:
        """The principal of a request or handshake; None if it presents nothing. Raises ``AuthFailed``."""
        header = headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise self.failed("malformed", "the Authorization header must be 'Bearer <key or token>'")
            return await self.bearer(token.strip())
        if ticket is not None:
            return await self.ticket(ticket)
        cookie = cookies.get(SESSION_COOKIE)
        if cookie:
            return await self.session(cookie)
        return None

    async def bearer(self, token: str) -> Principal:
        if token.startswith(KEY_PREFIX):
            return await self.key(token)
        if not self.jwt.enabled:
            raise self.failed("malformed", "the bearer token is not a runwatch key, and no JWT issuer is configured")
        try:
            claims = await self.jwt.verify(token)
        except TokenRefused as exc:
            raise self.failed(exc.reason, str(exc)) from None
        return self.principal_from_claims(claims)

    def principal_from_claims(self, claims: dict[str, Any], source: str = "jwt") -> Principal:
        """The principal a verified JWT (or OpenID Connect ID token, ``source="oidc"``) stands for.
        A JWT's principal expires with it; an OIDC login's session lasts ``session_hours``."""
        s = self.settings
        role = Role.highest(claims.get(s.jwt.roles_claim))
        if role is None:
            raise self.failed(
                "no_role", f"the token's {s.jwt.roles_claim!r} claim names no role (viewer, operator, admin)"
            )
        tenant = self._tenant(claims.get(s.jwt.tenant_claim), role)
        subject = str(claims.get("sub") or "")
        if not subject:
            raise self.failed("malformed", "the token has no 'sub' claim")
        if len(subject) > MAX_SUBJECT:  # refused, not cut: two subjects must not become one principal
            raise self.failed("malformed", f"the token's 'sub' claim is longer than {MAX_SUBJECT} characters")
        name = claims.get("name") or claims.get("preferred_username") or claims.get("email") or subject
        return Principal(
            id=f"jwt:{subject}",
            name=str(name)[:200],
            tenant=tenant,
            role=role,
            source=source,
            expires_at=float(claims["exp"]) if source == "jwt" else None,
        )

    def _tenant(self, claim: Any, role: Role) -> str:
        """The tenant a token's claim names: one a key could have (``TENANT_PATTERN``), never cut
        short or cleaned up, so that no two claims become one tenant; an admin's may be absent."""
        name = self.settings.jwt.tenant_claim
        if claim is None or claim == "":
            if role is not Role.ADMIN:
                raise self.failed("no_tenant", f"the token has no {name!r} claim")
            return DEFAULT_TENANT
        if not isinstance(claim, str) or not TENANT.match(claim):
            raise self.failed(
                "no_tenant",
                f"the token's {name!r} claim is not a tenant name: 1 to 64 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit",
            )
        return claim

    async def _stored(self, secret: str, kind: str) -> Principal | None:
        """The principal of a stored key or session, looked up at most every ``KEY_CACHE_SECONDS``."""
        digest = hash_secret(secret)
        now = time.monotonic()
        cached = self._keys.get(digest)
        if cached is None or now - cached[1] > KEY_CACHE_SECONDS:
            record = await self.credentials.find(digest, time.time(), kind)
            principal = None
            if record is not None:
                principal = key_principal(record) if kind == "key" else _principal(_json(record.principal))
            if len(self._keys) >= KEY_CACHE_SIZE:
                self._keys.clear()
            cached = self._keys[digest] = (principal, now)
        principal = cached[0]
        if principal is not None and principal.expires_at is not None and principal.expires_at <= time.time():
            return None
        return principal

    async def key(self, secret: str) -> Principal:
        principal = await self._stored(secret, "key")
        if principal is None:
            raise self.failed("unknown_key", "this API key is unknown or revoked")
        return principal

    async def session(self, cookie: str) -> Principal:
        principal = await self._stored(cookie, "session") if cookie.startswith(SESSION_PREFIX) else None
        if principal is None:
            raise self.failed("bad_session", "the session has ended or expired; log in again")
        if principal.key_id is not None and await self.is_revoked(principal.key_id):
            raise self.failed("revoked", "the key this session was made with has been revoked; log in again")
        return principal

    async def ticket(self, ticket: str) -> Principal:
        record = await self.credentials.consume(hash_secret(ticket), "ticket", time.time())
        principal = _principal(_json(record.principal)) if record else None
        if principal is None:
            raise self.failed("bad_ticket", "the ticket is unknown, used or expired; get a new one")
        return principal

    async def is_revoked(self, key_id: str) -> bool:
        now = time.monotonic()
        cached = self._revoked.get(key_id)
        if cached is None or now - cached[1] > KEY_CACHE_SECONDS:
            revoked = bool(await self.credentials.revoked([key_id]))
            if len(self._revoked) >= KEY_CACHE_SIZE:
                self._revoked.clear()
            cached = self._revoked[key_id] = (revoked, now)
        return cached[0]

    # -- what it makes ----------------------------------------------------------------------------

    async def make_session(self, principal: Principal) -> tuple[str, Principal]:
        """A dashboard session for ``principal``: the cookie's value (a random secret; only its
        hash is stored, so neither reading the database nor knowing a server secret makes one) and
        the principal it stands for, expiring no later than the credential it was made from."""
        expires = time.time() + self.settings.auth.session_hours * 3600
        if principal.expires_at is not None:
            expires = min(expires, principal.expires_at)
        session = msgspec.structs.replace(principal, source="session", expires_at=expires)
        secret = await self._issue("session", SESSION_PREFIX, session, expires - time.time())
        return secret, session

    async def end_session(self, cookie: str) -> None:
        """Log out: the session works nowhere from now on (other instances: within the key cache's seconds)."""
        digest = hash_secret(cookie)
        self._keys.pop(digest, None)
        await self.credentials.revoke_secret(digest, "session", time.time())

    async def make_ticket(self, principal: Principal) -> str:
        """A single-use WebSocket ticket for ``principal``, valid ``TICKET_SECONDS``."""
        return await self._issue("ticket", TICKET_PREFIX, principal, TICKET_SECONDS)

    async def make_code(self, principal: Principal) -> str:
        """A one-time login code for ``principal`` (the dashboard URL ``serve`` prints)."""
        return await self._issue("code", CODE_PREFIX, principal, CODE_SECONDS)

    async def _issue(self, kind: str, prefix: str, principal: Principal, seconds: float) -> str:
        """A new stored credential of ``kind`` standing for ``principal``, valid ``seconds``."""
        secret = new_secret(prefix)
        now = time.time()
        source = "ticket" if kind == "ticket" else "session" if kind == "session" else principal.source
        await self.credentials.add(
            Credential(
                id=new_id(kind[0] + "_"),
                kind=kind,
                tenant=principal.tenant,
                role=principal.role.value,
                name=principal.name,
                created_at=now,
                expires_at=now + seconds,
                principal=msgspec.json.encode(msgspec.structs.replace(principal, source=source)).decode(),
            ),
            hash_secret(secret),
        )
        return secret

    async def code(self, code: str) -> Principal:
        record = await self.credentials.consume(hash_secret(code), "code", time.time())
        principal = _principal(_json(record.principal)) if record else None
        if principal is None:
            raise self.failed("bad_code", "this login code is unknown, used or expired")
        return principal


def key_principal(record: Credential) -> Principal:
    return Principal(
        id=f"key:{record.id}",
        name=record.name or record.id,
        tenant=record.tenant,
        role=Role(record.role),
        source="key",
        key_id=record.id,
        expires_at=record.expires_at,
    )


async def create_key(credentials: Credentials, *, tenant: str, role: Role, name: str = "") -> tuple[str, Credential]:
    """A new API key: its secret (shown once, never stored) and its record."""
    secret = new_secret(KEY_PREFIX)
    record = Credential(id=new_id("k_"), kind="key", tenant=tenant, role=role.value, name=name, created_at=time.time())
    await credentials.add(record, hash_secret(secret))
    return secret, record
