"""Secrets kept out of everything runwatch shows: run errors, events, logs.

A ``Redactor`` scrubs text of the secrets it was given (the model endpoint's API key, the password
in its URL) and of anything shaped like one wherever it came from: credentials in a URL
(``http://user:pass@host``), ``Bearer``/``Basic`` authorization values, ``sk-…`` API keys, and
runwatch's own keys, sessions, codes and tickets (``rw_…``, ``rws_``, ``rwc_…``, ``rwt_…``) and JWTs.
Upstream errors echo such things ("Incorrect API key provided: Bearer sk-…"), so every error text
from outside passes through one before it becomes an event, and every log line through the
log processor in ``runwatch.api.logs``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MASK = "***"

#: ``scheme://userinfo@`` — the userinfo (``user:password``) goes, the rest of the URL stays.
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s@]+@")
#: An authorization value: ``Bearer <token>`` or ``Basic <base64>`` (a digit or ``=`` in it, so prose is left alone).
_AUTHORIZATION = re.compile(r"(?i)\b(bearer|basic)(\s+)(?=[\w.~+/=-]*[0-9=])[\w.~+/=-]{8,}")
#: API keys in the ``sk-…`` shape (OpenAI, and the many endpoints that copy it).
_API_KEY = re.compile(r"\bsk-[\w-]{8,}")
#: runwatch's own credentials: API keys (``rw_``), sessions (``rws_``), login codes (``rwc_``), tickets (``rwt_``).
_RUNWATCH_CREDENTIAL = re.compile(r"\b(rw[cst]?_)[\w-]{16,}")
#: A JWT (three base64url parts, the first a JSON header).
_JWT = re.compile(r"\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*")
#: Shorter configured secrets are not scrubbed word by word: they would mangle ordinary text.
_MIN_SECRET = 4


def mask_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``, for showing where an endpoint is."""
    return _URL_CREDENTIALS.sub(rf"\1{MASK}@", url)


def url_password(url: str | None) -> tuple[str, ...]:
    """The password in a URL (a database's, Redis's), as written and unquoted; none if it has none."""
    if not url:
        return ()
    try:
        password = urlsplit(url).password
    except ValueError:
        return ()
    return tuple(dict.fromkeys([password, unquote(password)])) if password else ()


def endpoint_secrets(base_url: str | None, api_key: str | None) -> tuple[str, ...]:
    """The secrets of a model endpoint's settings: its API key and the password in its URL."""
    found = [api_key]
    if base_url:
        try:
            password = urlsplit(base_url).password
        except ValueError:
            password = None
        if password:
            found += [password, unquote(password)]
    return tuple(dict.fromkeys(s for s in found if s))


class Redactor:
    """Scrubs text of the given secrets and of anything shaped like a credential (see the module doc)."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Longest first, so a secret that contains another is removed whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if "://" in text:
            text = _URL_CREDENTIALS.sub(rf"\1{MASK}@", text)
        text = _AUTHORIZATION.sub(rf"\1\2{MASK}", text)
        if "rw" in text:
            text = _RUNWATCH_CREDENTIAL.sub(rf"\1{MASK}", text)
        if "eyJ" in text:
            text = _JWT.sub(MASK, text)
        return _API_KEY.sub(f"sk-{MASK}", text)
