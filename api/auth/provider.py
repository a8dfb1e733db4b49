"""An OpenID provider as runwatch's dashboard login uses it: discovery, the token endpoint, and
ID token verification with the provider's published keys."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import jwt

from runwatch.api.auth.authenticator import AuthFailed
from runwatch.api.auth.jwt import time_claims_problem

CLOCK_LEEWAY = 30


class Provider:
    """One OpenID provider: its discovered endpoints and keys, and the client runwatch is there."""

    def __init__(self, issuer: str, client_id: str, client_secret: str | None, scopes: str) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = scopes
        self._config: dict[str, Any] | None = None
        self._keys: jwt.PyJWKClient | None = None

    async def config(self) -> dict[str, Any]:
        if self._config is None:
            async with httpx.AsyncClient(timeout=10) as client:
                r = await client.get(self.issuer + "/.well-known/openid-configuration")
                r.raise_for_status()
                self._config = r.json()
            self._keys = jwt.PyJWKClient(self._config["jwks_uri"], cache_keys=True, lifespan=300, timeout=5)
        return self._config

    async def exchange(self, code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
        """The token endpoint's answer to the authorization code."""
        config = await self.config()
        auth = (self.client_id, self.client_secret) if self.client_secret else None
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        if auth is None:
            form["client_id"] = self.client_id
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.post(config["token_endpoint"], data=form, auth=auth)
        if r.status_code != 200:
            raise AuthFailed("oidc", f"the identity provider refused the login ({r.status_code}): {r.text[:200]}")
        return r.json()

    async def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        await self.config()
        assert self._keys is not None
        try:
            header = jwt.get_unverified_header(id_token)
            keys = (await asyncio.to_thread(self._keys.get_jwk_set)).keys
            # A provider with one key may leave ``kid`` out; the algorithm must still be the key's.
            key = next(
                (k for k in keys if header.get("kid") in (None, k.key_id) and k.algorithm_name == header.get("alg")),
                None,
            )
            if key is None:
                raise jwt.InvalidTokenError("no key of the provider signs it (kid and alg must match)")
            claims = jwt.decode(
                id_token,
                key.key,
                algorithms=[key.algorithm_name],
                audience=self.client_id,
                issuer=self.issuer,
                leeway=CLOCK_LEEWAY,
                options={"require": ["exp", "iat", "sub"]},
            )
        except (jwt.InvalidTokenError, jwt.PyJWKClientError) as exc:
            raise AuthFailed("oidc", f"the identity provider's ID token is not valid: {exc}") from None
        problem = time_claims_problem(claims)
        if problem is not None:
            raise AuthFailed("oidc", f"the identity provider's ID token is not valid: {problem}")
        if claims.get("nonce") != nonce:
            raise AuthFailed("oidc", "the ID token's nonce is not this login's")
        return claims
