"""Verifying JWTs: HS256 with ``RUNWATCH_JWT_SECRET``, RS256/ES256 with keys from ``RUNWATCH_JWT_JWKS``.

PyJWT does the verifying (Litestar's own JWT support is built on it too, but authenticates one kind
of credential with one secret and no key set; runwatch's middleware takes keys, sessions, tickets
and JWTs at once, so it calls PyJWT itself). The algorithm is never the token's choice alone:
HS256 is accepted only when a secret is configured, RS256/ES256 only with a key set, and each key
of the set only for its own algorithm — so ``alg: none`` and algorithm confusion (a public key used
as an HMAC secret) are refused.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import jwt

#: Seconds of clock difference tolerated on ``exp`` and ``nbf``.
LEEWAY = 30
ASYMMETRIC = ("RS256", "ES256")
#: The claims that are times: JSON numbers of seconds since the epoch (RFC 7519's NumericDate).
TIME_CLAIMS = ("exp", "nbf", "iat")


def time_claims_problem(claims: dict[str, Any]) -> str | None:
    """What is wrong with the token's times, if anything. PyJWT reads ``"exp": "9999999999"`` as a
    number; a token whose times are strings, booleans or not finite is refused here instead."""
    for name in TIME_CLAIMS:
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"the token's {name!r} claim must be a number of seconds since 1970, not {type(value).__name__}"
    return None


class TokenRefused(Exception):
    """A JWT that is not accepted; ``reason`` is the ``runwatch_auth_failures_total`` label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class JWTVerifier:
    def __init__(
        self,
        *,
        secret: str | None,
        jwks: str | None,
        issuer: str | None,
        audience: str | None,
    ) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._client: jwt.PyJWKClient | None = None
        self._set: jwt.PyJWKSet | None = None
        if jwks and jwks.startswith(("http://", "https://")):
            self._client = jwt.PyJWKClient(jwks, cache_keys=True, lifespan=300, timeout=5)
        elif jwks:
            self._set = jwt.PyJWKSet.from_json(Path(jwks).expanduser().read_text())

    @property
    def enabled(self) -> bool:
        return bool(self._secret or self._client or self._set)

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, once its signature, ``exp``, ``nbf``, ``iss`` and ``aud`` are checked."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenRefused("malformed", "the bearer token is neither a runwatch key nor a JWT") from None
        alg = header.get("alg")
        if alg == "HS256" and self._secret:
            key: Any = self._secret
        elif alg in ASYMMETRIC and (self._client or self._set):
            key = await self._key(header, alg)
        else:
            raise TokenRefused("bad_algorithm", f"JWTs signed with {alg!r} are not accepted here")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self._issuer,
                audience=self._audience,
                leeway=LEEWAY,
                options={"require": ["exp"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused("expired", "the token has expired; get a fresh one") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused("not_yet_valid", "the token is not valid yet (nbf)") from None
        except jwt.InvalidIssuerError:
            raise TokenRefused("wrong_issuer", "the token's issuer is not the one configured") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused("wrong_audience", "the token is for another audience") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRefused("malformed", f"the token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("bad_signature", "the token's signature does not verify") from None
        except jwt.InvalidTokenError as exc:
            raise TokenRefused("malformed", f"the token is not valid: {exc}") from None
        problem = time_claims_problem(claims)
        if problem is not None:
            raise TokenRefused("malformed", problem)
        return claims

    async def _key(self, header: dict[str, Any], alg: str) -> Any:
        kid = header.get("kid")
        try:
            if self._client is not None:
                keys = (await asyncio.to_thread(self._client.get_jwk_set)).keys
            else:
                assert self._set is not None
                keys = self._set.keys
        except jwt.PyJWKClientError as exc:
            raise TokenRefused("unknown_key", f"cannot fetch the signing keys: {exc}") from None
        for k in keys:
            if (kid is None or k.key_id == kid) and k.algorithm_name == alg:
                return k.key
        raise TokenRefused("unknown_key", "no configured key signs this token (kid and alg must match)")
