"""Optional OpenID Connect login for the dashboard: authorization code flow with PKCE (S256).

``GET /api/oidc/login`` sends the browser to the provider with a fresh ``state``, ``nonce`` and
PKCE verifier, kept in a short-lived signed cookie; ``GET /api/oidc/callback`` checks the state,
exchanges the code (with the verifier and the client secret) for an ID token, verifies it (the
provider's keys, ``iss``, ``aud`` = the client id, ``exp``, the nonce) and makes the same session
cookie a key or token login makes. Tenant and roles come from the ID token's claims, as for JWTs.

The provider is found by discovery (``<issuer>/.well-known/openid-configuration``), read once.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import time
from urllib.parse import urlencode

import httpx
import structlog
from litestar import Request, get
from litestar.datastructures import Cookie
from litestar.response import Redirect, Response

from runwatch.agents.errors import BadRequest
from runwatch.api.auth.authenticator import Authenticator, AuthFailed
from runwatch.api.auth.provider import Provider
from runwatch.api.auth.tokens import same_secret
from runwatch.api.auth.web import is_https, session_cookie
from runwatch.api.observability.metrics import Metrics

log = structlog.get_logger()

FLOW_COOKIE = "runwatch_oidc"
#: Seconds a login may take at the provider.
FLOW_SECONDS = 600


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _redirect_uri(request: Request) -> str:
    """Where the provider sends the browser back: this server as the browser reached it (behind a
    TLS proxy, https)."""
    base = str(request.base_url).rstrip("/")
    if is_https(request) and base.startswith("http://"):
        base = "https://" + base.removeprefix("http://")
    return base + "/api/oidc/callback"


def _back_to_login(message: str) -> Response[str]:
    """A refused single sign-on: 401, and a page that takes the browser back to the login page,
    which shows why (``/?login_error=…``)."""
    target = "/?" + urlencode({"login_error": message[:300]})
    page = (
        f'<!doctype html><meta http-equiv="refresh" content="0;url={html.escape(target)}">'
        f"<title>runwatch: not logged in</title><p>{html.escape(message)}</p>"
        f'<p><a href="{html.escape(target)}">Back to the login page</a>'
    )
    gone = Cookie(key=FLOW_COOKIE, value="", max_age=0, path="/api/oidc", httponly=True, samesite="lax")
    return Response(page, status_code=401, media_type="text/html", cookies=[gone])


def _provider(oidc: Provider | None) -> Provider:
    if oidc is None:
        raise BadRequest("OpenID Connect login is not configured (RUNWATCH_OIDC_ISSUER)")
    return oidc


@get("/api/oidc/login", tags=["auth"], summary="Log in with the identity provider (OpenID Connect)")
async def oidc_login(request: Request, auth: Authenticator, oidc: Provider | None) -> Redirect:
    provider = _provider(oidc)
    config = await provider.config()
    state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": _redirect_uri(request),
            "scope": provider.scopes,
            "state": state,
            "nonce": nonce,
            "code_challenge": _challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    flow = auth.signer.sign({"state": state, "nonce": nonce, "verifier": verifier}, time.time() + FLOW_SECONDS)
    # Lax, not Strict: the provider sends the browser back with a cross-site navigation.
    cookie = Cookie(
        key=FLOW_COOKIE,
        value=flow,
        max_age=FLOW_SECONDS,
        path="/api/oidc",
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )
    return Redirect(f"{config['authorization_endpoint']}?{query}", cookies=[cookie])


@get("/api/oidc/callback", tags=["auth"], summary="Where the identity provider sends the browser back")
async def oidc_callback(
    request: Request, auth: Authenticator, metrics: Metrics, oidc: Provider | None
) -> Response[str]:
    # (``state`` is a name Litestar reserves for a handler parameter: read from the query here.)
    state, code = request.query_params.get("state", ""), request.query_params.get("code", "")
    provider = _provider(oidc)
    flow = auth.signer.verify(request.cookies.get(FLOW_COOKIE, ""))
    try:
        if request.query_params.get("error"):
            raise AuthFailed("oidc", f"the identity provider said: {request.query_params.get('error')}")
        if flow is None or not same_secret(str(flow.get("state", "")), state) or not code:
            raise AuthFailed("oidc", "this login was not started here, or took too long; start again")
        tokens = await provider.exchange(code, str(flow["verifier"]), _redirect_uri(request))
        claims = await provider.verify(str(tokens.get("id_token", "")), str(flow["nonce"]))
        principal = auth.principal_from_claims(claims, source="oidc")
    except AuthFailed as exc:
        metrics.auth_failure(exc.reason if exc.reason in ("no_role", "no_tenant") else "oidc")
        log.warning("auth.oidc_failed", reason=exc.reason, error=exc.message)
        return _back_to_login(exc.message)
    except httpx.HTTPError as exc:
        return _back_to_login(f"the identity provider cannot be reached: {exc}")
    value, session = await auth.make_session(principal)
    log.info("auth.oidc_login", principal=principal.id)
    cookies = [
        session_cookie(request, value, session),
        Cookie(key=FLOW_COOKIE, value="", max_age=0, path="/api/oidc", httponly=True, samesite="lax"),
    ]
    # A page of ours moves on to the dashboard: a redirect would still count as the provider's
    # cross-site navigation, and the Strict session cookie would not be sent with it.
    page = '<!doctype html><meta http-equiv="refresh" content="0;url=/"><title>runwatch</title><a href="/">Continue</a>'
    return Response(page, media_type="text/html", cookies=cookies)
