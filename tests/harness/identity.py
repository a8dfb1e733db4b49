"""Credentials for tests: JWTs signed as an identity provider would (HS256, RS256 from a JWKS file),
API keys made through the server's own API, and the settings of a server that trusts them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://idp.runwatch.test"
AUDIENCE = "runwatch"
SECRET = "a-test-secret-that-is-long-enough-for-hs256!"
_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PEM = _RSA.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
PUBLIC_PEM = _RSA.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def jwks_file(folder: Path) -> Path:
    """The RSA key's public half as a JWKS file (``RUNWATCH_JWT_JWKS``)."""
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_RSA.public_key()))
    path = folder / "jwks.json"
    path.write_text(json.dumps({"keys": [{**public, "kid": "test-key", "alg": "RS256", "use": "sig"}]}))
    return path


def jwt_env(folder: Path) -> dict[str, str]:
    """Settings of a server that accepts this module's HS256 and RS256 tokens."""
    return {
        "RUNWATCH_JWT_SECRET": SECRET,
        "RUNWATCH_JWT_JWKS": str(jwks_file(folder)),
        "RUNWATCH_JWT_ISSUER": ISSUER,
        "RUNWATCH_JWT_AUDIENCE": AUDIENCE,
    }


def token(
    sub: str = "alice",
    *,
    tenant: str | None = "acme",
    roles: Any = ("operator",),
    ttl: float = 300,
    alg: str = "HS256",
    key: Any = None,
    **claims: Any,
) -> str:
    """A JWT as the test identity provider issues it; any claim can be overridden or added."""
    now = time.time()
    body: dict[str, Any] = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": int(now), "exp": int(now + ttl)}
    if tenant is not None:
        body["tenant"] = tenant
    if roles is not None:
        body["roles"] = list(roles)
    body.update(claims)
    if key is None:
        key = SECRET if alg == "HS256" else RSA_PEM
    headers = {"kid": "test-key"} if alg == "RS256" else None
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def make_key(server: Any, tenant: str, role: str, name: str = "") -> str:
    """A new API key, made by the server's admin through ``POST /api/keys``."""
    async with server.client() as c:
        r = await c.post("/api/keys/", json={"tenant": tenant, "role": role, "name": name or f"{role}@{tenant}"})
        assert r.status_code == 201, r.text
        return r.json()["key"]
