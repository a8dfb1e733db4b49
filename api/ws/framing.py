"""WebSocket frames built once and written straight to the server's transport, for every watcher.

The ASGI ``send`` makes each watcher's frame on its own: the text is encoded, framed and copied
per socket, through two Litestar wrappers and uvicorn's protocol. For a fan-out that is most of
the cost. Here a frame's bytes (RFC 6455 header + payload) are made once and the very same
``bytes`` object is written to every watcher's transport.

This reaches past ASGI into uvicorn's ``websockets-sansio`` protocol, so it is opt-in by
recognition: ``direct_writer`` returns a writer only for that protocol with no extension (no
permessage-deflate) on the connection, and ``None`` otherwise; callers then use the ASGI send.
Every attribute a write reads is checked when the connection is recognised, and should uvicorn
still surprise us, a write that raises demotes its connection to the ASGI send for good (logged
once). ``RUNWATCH_WS_DIRECT_WRITES=off`` turns the whole thing off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog

log = structlog.get_logger()

#: Where ``expose_server_send`` leaves the server's own ``send`` in a WebSocket or HTTP scope.
SCOPE_KEY = "runwatch.server_send"

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]]


def expose_server_send(app: ASGIApp) -> ASGIApp:
    """Wrap an ASGI app so handlers can find the server's ``send`` (frameworks wrap theirs): the
    WebSocket fan-out and the offline model's pacer (``offline_pacer.py``) write past it."""

    async def wrapped(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("websocket", "http"):
            scope[SCOPE_KEY] = send
        await app(scope, receive, send)

    return wrapped


def text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented text frame, as a server sends it (RFC 6455, section 5.2)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 65536:
        header = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return header + payload


class DirectWriter:
    """Writes whole frames to one uvicorn WebSocket connection's transport, or says it can't.

    ``write`` refuses (returns False) whenever the ASGI send would not write at once: the socket's
    buffer is over its high-water mark, a close was sent, the client left. The caller then takes
    the ASGI path, which waits. Frames never interleave: each write is one whole frame. A write
    that raises demotes the writer: it logs why, once, and refuses from then on.
    """

    __slots__ = ("_conn", "_demoted", "_open", "_protocol", "_transport", "_writable", "_ws")

    def __init__(self, protocol: Any, open_state: Any, conn: str = "") -> None:
        self._protocol = protocol
        self._ws = protocol.conn
        self._transport = protocol.transport
        self._writable: asyncio.Event = protocol.writable
        self._open = open_state
        self._conn = conn
        self._demoted = False

    @property
    def demoted(self) -> bool:
        """True once a write failed: this connection's frames all go through the ASGI send."""
        return self._demoted

    def write(self, frame: bytes) -> bool:
        if self._demoted:
            return False
        try:
            p = self._protocol
            if (
                p.close_sent
                or p.disconnected
                or not self._writable.is_set()
                or self._ws.state is not self._open
                or self._transport.is_closing()
            ):
                return False
            self._transport.write(frame)
        except Exception as exc:
            self._demoted = True
            log.warning("ws.direct_writes_demoted", conn=self._conn, error=repr(exc))
            return False
        return True


def sansio_protocol(scope: Scope) -> Any | None:
    """uvicorn's ``websockets-sansio`` protocol behind this WebSocket scope, or None (another server)."""
    protocol = getattr(scope.get(SCOPE_KEY), "__self__", None)
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    except ImportError:
        return None
    return protocol if isinstance(protocol, WebSocketsSansIOProtocol) else None


def direct_writer(scope: Scope, conn: str = "") -> DirectWriter | None:
    """A ``DirectWriter`` for this accepted WebSocket, if its server is one we know how to write to.

    ``conn`` names the connection in the writer's log line.
    """
    protocol = sansio_protocol(scope)
    if protocol is None:
        return None
    try:
        from websockets.protocol import State
    except ImportError:
        return None
    ws = getattr(protocol, "conn", None)
    transport = getattr(protocol, "transport", None)
    if (
        ws is None
        or getattr(ws, "extensions", None)
        or not isinstance(getattr(ws, "state", None), State)
        or not getattr(protocol, "handshake_complete", False)
        or getattr(protocol, "initial_response", None) is not None
        or not isinstance(getattr(protocol, "close_sent", None), bool)
        or not isinstance(getattr(protocol, "disconnected", None), bool)
        or not isinstance(getattr(protocol, "writable", None), asyncio.Event)
        or transport is None
        or not callable(getattr(transport, "write", None))
        or not callable(getattr(transport, "is_closing", None))
    ):
        return None
    return DirectWriter(protocol, State.OPEN, conn)
