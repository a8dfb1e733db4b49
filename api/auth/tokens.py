"""Secrets as runwatch makes them: API keys, codes and tickets (random, stored only as a hash), and
signed values (session cookies), with one constant-time check for each."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

import msgspec

#: Every API key starts with this, so a key is recognisable (to people, and to secret scanners) and
#: never mistaken for a JWT.
KEY_PREFIX = "rw_"
CODE_PREFIX = "rwc_"
SESSION_PREFIX = "rws_"
TICKET_PREFIX = "rwt_"


def new_secret(prefix: str) -> str:
    """256 random bits, URL-safe, after ``prefix``."""
    return prefix + secrets.token_urlsafe(32)


def new_id(prefix: str) -> str:
    """A public identifier, safe to log and show: ``k_3f9a1c07d2e4b6a8``."""
    return prefix + secrets.token_hex(8)


def hash_secret(secret: str) -> str:
    """What is stored of a secret. Its 256 random bits make a plain SHA-256 enough (no slow hash:
    nothing about it can be guessed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """HMAC-SHA256 over a JSON payload with an expiry: ``<payload>.<signature>``, both base64url."""

    def __init__(self, key: str) -> None:
        self._key = hashlib.sha256(("runwatch-session:" + key).encode()).digest()

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def sign(self, value: dict, expires_at: float) -> str:
        payload = _b64(msgspec.json.encode({"v": value, "exp": expires_at}))
        return f"{payload}.{self._mac(payload)}"

    def verify(self, signed: str, now: float | None = None) -> dict | None:
        """The value, if ``signed`` was made here and has not expired; else None."""
        payload, _, mac = signed.partition(".")
        if not mac or not signed.isascii() or not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            return None
        try:
            data = msgspec.json.decode(_unb64(payload))
        except (ValueError, msgspec.DecodeError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("exp"), int | float):
            return None
        if data["exp"] <= (time.time() if now is None else now):
            return None
        return data.get("v") if isinstance(data.get("v"), dict) else None


def same_secret(given: str, expected: str) -> bool:
    """Constant-time equality of two secrets (any text: compared as UTF-8 bytes)."""
    return hmac.compare_digest(given.encode(errors="replace"), expected.encode(errors="replace"))
