"""How a client command on the server's machine finds the local admin key, and where it may send it.

The keys it looks at: ``<data dir>/admin.key`` and the file ``serve`` left for the URL's port. It
sends one only over plain HTTP to a loopback address, and only after the server there proved it
holds that very key (``local_keys``: a MAC of a fresh nonce and of the address the request reached),
and then only to the address that proved it. A port's file whose server is gone is removed.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx

from runwatch.api.auth.local_keys import (
    PROOF_PATH,
    PortFile,
    admin_key_path,
    canonical_address,
    proof,
    read_admin_key,
    read_port_file,
    remove_if_gone,
)

#: Seconds the proof may take: a program on the port that does not answer costs no more.
PROOF_TIMEOUT = 5.0
#: The most of the proof's answer read: a few dozen bytes, from a server that may not be ours.
PROOF_MAX_BYTES = 4096
#: A proof as a runwatch server gives it: HMAC-SHA256 in hex.
HEX_MAC = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class LocalCredential:
    """A local admin key and the URL to send it to (the address that proved it holds it), or no key
    and the URL as given; ``notice`` is what the user should be told, if anything."""

    key: str | None
    url: str
    notice: str | None = None


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(canonical_address(host)).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class _Answer:
    """What the program on the port said to the proof's request, and from which address."""

    #: 64 hex digits, or None for anything else.
    proof: str | None
    peer: tuple[str, int]
    #: A runwatch server that keeps no local admin key (authentication off) said so.
    keyless: bool = False


def _ask(url: str, nonce: str) -> _Answer | None:
    """The answer to the proof's request for ``nonce``; None if nothing answered. Proxies are not
    used (the answer must come from the address connected to), and a program that trickles its
    answer is given up on after ``PROOF_TIMEOUT`` in all."""
    deadline = time.monotonic() + PROOF_TIMEOUT
    body = b""
    try:
        with httpx.Client(base_url=url, timeout=PROOF_TIMEOUT, trust_env=False) as client:
            with client.stream("GET", f"{PROOF_PATH}?{urlencode({'nonce': nonce})}") as r:
                address = r.extensions.get("network_stream").get_extra_info("server_addr")
                peer = (str(address[0]), int(address[1]))
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > PROOF_MAX_BYTES or time.monotonic() > deadline:
                        return _Answer(None, peer)
    except (httpx.HTTPError, httpx.InvalidURL, AttributeError, TypeError, IndexError):
        return None  # nothing answered (or not over a socket whose address can be known)
    try:
        data = json.loads(body) if r.status_code == 200 else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or "proof" not in data:
        return _Answer(None, peer)
    value = data["proof"]
    if isinstance(value, str) and HEX_MAC.fullmatch(value):
        return _Answer(value, peer)
    return _Answer(None, peer, keyless=value is None)


def _pinned(url: str, address: tuple[str, int]) -> str:
    """``url`` with its host replaced by the address that proved itself (a name may resolve elsewhere
    on the next connection)."""
    parts = urlsplit(url)
    host = canonical_address(address[0])
    netloc = f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return parts._replace(netloc=netloc).geturl()


def _candidates(data_dir: Path, found: PortFile | None) -> dict[str, Path]:
    """Each local admin key there is for this URL → the file it is in."""
    candidates: dict[str, Path] = {}
    key = read_admin_key(data_dir)
    if key is not None:
        candidates[key] = admin_key_path(data_dir)
    if found is not None:
        candidates.setdefault(found.key, found.path)
    return candidates


def find_local_key(url: str, data_dir: Path) -> LocalCredential:
    """The local admin key to send to ``url``, once the server there proved it holds it."""
    try:
        parts = urlsplit(url)
        port = parts.port or 80
    except ValueError:  # not a URL: the command says so when it uses it
        return LocalCredential(None, url)
    if parts.scheme != "http" or not _is_loopback(parts.hostname):
        return LocalCredential(None, url)  # local keys go to this machine's servers only
    found = read_port_file(port)
    candidates = _candidates(data_dir, found)
    if not candidates:
        return LocalCredential(None, url)
    nonce = secrets.token_hex(32)
    answer = _ask(url, nonce)
    if answer is not None and answer.proof is not None:
        for key in candidates:
            if hmac.compare_digest(answer.proof, proof(key, nonce, *answer.peer)):
                if found is not None and found.key != key:
                    remove_if_gone(port, found)
                return LocalCredential(key, _pinned(url, answer.peer))
    removed = found is not None and remove_if_gone(port, found)
    notes = [f"{found.path} was left by a server that is gone; it is removed"] if removed and found else []
    if answer is not None and not answer.keyless:  # (nothing answered: the command itself says so)
        files = " or ".join(str(path) for path in candidates.values())
        notes.insert(
            0,
            f"the server at {url} did not prove it holds the local admin key ({files}), so the key was not "
            "sent; if it is a runwatch server that needs one, pass --token or set RUNWATCH_TOKEN",
        )
    return LocalCredential(None, url, "; ".join(notes) or None)
