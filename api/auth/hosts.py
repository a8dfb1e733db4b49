"""Which ``Host`` names the server answers: the defence against DNS rebinding.

A page on ``evil.example`` whose name the attacker then points at 127.0.0.1 talks to a local server
as if it were its own origin; the browser still sends ``Host: evil.example``. With authentication
off nothing else would stop that page from reading runs and starting them, so the server then
answers only loopback names (``localhost``, ``127.0.0.0/8``, ``::1``; any port) and the address it
was told to listen on, unless ``RUNWATCH_ALLOWED_HOSTS`` names more (``example.com``,
``*.example.com``, or ``*`` for any). The setting applies with authentication on too; without it,
a server with authentication on answers any name (a credential is needed anyway). Loopback names
are always answered: no page elsewhere can send them, and the server's own runs and client
commands use them.

Litestar's ``AllowedHostsConfig`` is not used: it compares the port too, refuses a WebSocket with a
plain HTTP answer the ASGI server cannot send on a socket scope, and says nothing of the setting.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import msgspec
import structlog

from runwatch.agents.errors import HTTP_STATUS, CloseCode, ErrorCode
from runwatch.api.auth.local_keys import canonical_address
from runwatch.api.http_errors import ErrorBody
from runwatch.api.settings.config import Settings

log = structlog.get_logger()

#: The most of a refused ``Host`` header a log line or an error repeats.
SHOWN_CHARS = 100
#: ``Host`` headers whose answer is remembered (a request's check is then one dict lookup); when
#: full, the memory is emptied: distinct made-up names cost a parse each, never memory.
CACHE_SIZE = 1024
_WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})


def host_name(header: str) -> str | None:
    """The name in a ``Host`` header, lower case, without port or brackets; None if it has none."""
    value = header.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        if rest and not (rest[0] == ":" and rest[1:].isdigit()):
            return None
    else:
        name, colon, port = value.rpartition(":")
        if not colon:
            name = port
        elif not port.isdigit() or ":" in name:
            return None
    name = name.rstrip(".")
    return canonical_address(name) if name else None


class AllowedHosts:
    """The names a server answers: exact ones, ``*.suffix`` ones, and every loopback address."""

    __slots__ = ("_seen", "names", "suffixes")

    def __init__(self, listed: list[str], own: str) -> None:
        exact = [h for h in listed if not h.startswith("*.")]
        self.names = frozenset(
            {"localhost"}
            | {canonical_address(h.rstrip(".")) for h in exact}
            | ({canonical_address(own)} if own not in _WILDCARD_ADDRESSES else set())
        )
        self.suffixes = tuple(h[1:].lower().rstrip(".") for h in listed if h.startswith("*."))
        self._seen: dict[str, bool] = {}

    @classmethod
    def of(cls, settings: Settings) -> AllowedHosts | None:
        """The check ``settings`` ask for; None when every name is answered."""
        listed = settings.http.allowed_hosts
        if "*" in listed or (settings.auth.on and not listed):
            return None
        return cls(listed, settings.server.host)

    def allows_header(self, header: str) -> bool:
        """Whether a request whose ``Host`` header is ``header`` is answered."""
        answer = self._seen.get(header)
        if answer is None:
            if len(self._seen) >= CACHE_SIZE:
                self._seen.clear()
            answer = self._seen[header] = self.allows(host_name(header))
        return answer

    def allows(self, name: str | None) -> bool:
        if name is None:
            return False
        if name in self.names or (self.suffixes and name.endswith(self.suffixes)):
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False


def _header(scope: Any) -> str:
    for key, value in scope["headers"]:
        if key == b"host":
            return value.decode("latin-1")
    return ""


class HostCheck:
    """ASGI middleware: a request or WebSocket handshake naming a host the server does not answer
    gets a 400 ``host_not_allowed`` saying which setting lets it in (the socket is never opened)."""

    __slots__ = ("allowed", "app", "auth_on")

    def __init__(self, app: Any, allowed: AllowedHosts, auth_on: bool) -> None:
        self.app = app
        self.allowed = allowed
        self.auth_on = auth_on

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = _header(scope)
        if self.allowed.allows_header(header):
            await self.app(scope, receive, send)
            return
        shown = header[:SHOWN_CHARS]
        log.info("http.host_refused", host=shown, path=scope.get("path", "")[:SHOWN_CHARS], kind=scope["type"])
        await _refuse(scope, receive, send, self._message(shown))

    def _message(self, shown: str) -> str:
        off = "authentication is off (RUNWATCH_AUTH=off), so " if not self.auth_on else ""
        return (
            f"this server does not answer to the host name {shown!r} ({off}it answers only loopback names "
            "- localhost, 127.0.0.1, [::1] - and those in RUNWATCH_ALLOWED_HOSTS); "
            "to reach it by this name, add the name to RUNWATCH_ALLOWED_HOSTS"
        )


async def _refuse(scope: Any, receive: Any, send: Any, message: str) -> None:
    code = ErrorCode.HOST_NOT_ALLOWED
    body = msgspec.json.encode(ErrorBody(status_code=HTTP_STATUS[code], detail=message, code=code))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": HTTP_STATUS[code], "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": HTTP_STATUS[code], "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:  # an ASGI server that can only refuse the handshake: a bare 403
        await send({"type": "websocket.close", "code": CloseCode.FORBIDDEN, "reason": code.value})
