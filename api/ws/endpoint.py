"""``/ws``: the WebSocket endpoint — a receive loop that dispatches client messages, and a sender.

See ``docs/protocol.md`` for every message. Bad input gets an ``error`` message and the
connection keeps working; it ends only for an oversized frame (1009), a message flood (1008), a
slow consumer (1013; or 1011 from uvicorn when no pong came in time) or the server's shutdown
(1001, after every final event was delivered).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import NamedTuple

import structlog
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from runwatch.agents.errors import CLOSE_REASONS, CloseCode, ErrorCode, SlowConsumer
from runwatch.agents.identity import Principal
from runwatch.api import __version__
from runwatch.api.auth.authenticator import AuthFailed
from runwatch.api.auth.web import origin_allowed
from runwatch.api.settings.config import Settings
from runwatch.api.ws.connection import Connection
from runwatch.api.ws.cutoff import drop
from runwatch.api.ws.dispatch import MessageRate, handle
from runwatch.api.ws.framing import Scope, direct_writer, sansio_protocol
from runwatch.api.ws.parts import WsParts
from runwatch.api.ws.protocol import CLOSE_CODES, Error, Hello, ProtocolError, encode

log = structlog.get_logger()


class Ending(NamedTuple):
    """How a connection ends: its close code and reason and, for a slow consumer, why it was cut off."""

    code: CloseCode
    reason: str
    slow: SlowConsumer | None = None


async def _admit(socket: WebSocket, parts: WsParts, conn_id: str) -> Principal | None:
    """Check the handshake: a page on another origin is refused before the upgrade (HTTP 403); a
    missing or refused credential, or too many sockets of one principal, is closed right after it
    (4401, 1013) so that the client can read why. Returns the principal, or None if closed."""
    if not origin_allowed(socket.headers, parts.settings):
        parts.metrics.auth_failure("origin")
        log.warning("ws.origin_refused", conn=conn_id, origin=socket.headers.get("origin", "")[:200])
        await socket.close(code=CloseCode.FORBIDDEN, reason="origin not allowed")
        return None
    await socket.accept()
    principal = socket.scope.get("user")
    if principal is None:
        failure = socket.scope.get("auth")
        if failure is None:
            parts.metrics.auth_failure("missing")
        reason = failure.message if isinstance(failure, AuthFailed) else "sign in: no credential was sent"
        await _refuse(socket, CloseCode.UNAUTHENTICATED, reason[:120])
        return None
    limit = parts.settings.ws.connections_per_principal
    if principal.source != "off" and not await parts.limiter.open_connection(principal.id, conn_id, limit):
        parts.metrics.limited("ws_connections")
        await _refuse(socket, CloseCode.TRY_AGAIN_LATER, f"at most {limit} connections per principal")
        return None
    return principal


def _ping_timed_out(scope: Scope) -> bool:
    """Did uvicorn close this socket itself for want of a pong? Its keepalive sends close 1011 and
    drops the connection, and the app only hears that the client left."""
    close = getattr(getattr(sansio_protocol(scope), "conn", None), "close_sent", None)
    return getattr(close, "code", None) == CloseCode.INTERNAL_ERROR


def _forget_handshake(scope: Scope) -> None:
    """An accepted socket's handshake is not needed again: drop what holds it for the connection's
    life — uvicorn's parsed upgrade request and 101 response (``websockets-sansio``), and the
    headers Litestar parsed for the credential and Origin checks (rebuilt from the scope if asked
    for again). About 5 KiB of each idle connection's memory (bench/HISTORY.md, "idle")."""
    try:
        from litestar.types import Empty
        from litestar.utils.scope.state import ScopeState

        ScopeState.from_scope(scope).headers = Empty  # type: ignore[assignment]
    except (ImportError, AttributeError):  # an internal API of Litestar's: if it moved, keep them
        pass
    protocol = sansio_protocol(scope)
    if protocol is not None and protocol.handshake_complete:
        protocol.request = protocol.response = None


async def _refuse(socket: WebSocket, code: CloseCode, reason: str) -> None:
    try:
        await asyncio.wait_for(socket.close(code=code, reason=reason), 1.0)
    except Exception:
        pass


@websocket("/ws")
async def ws_endpoint(socket: WebSocket, ws_parts: WsParts) -> None:
    """One watcher: admitted, greeted, served until it or the server ends it, then closed with
    the code that says why."""
    parts = ws_parts
    conn_id = secrets.token_hex(4)
    principal = await _admit(socket, parts, conn_id)
    if principal is None:
        return
    _forget_handshake(socket.scope)
    conn = _open(socket, parts, conn_id, principal)
    opened = time.monotonic()
    ending = Ending(CloseCode.NORMAL, "client")
    tasks = _Tasks.start(socket, conn, parts)
    try:
        done, _ = await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
        ending = _ending(conn, tasks, done)
        if ending.code == CloseCode.GOING_AWAY:
            await _drain(conn, tasks.sender, deadline=parts.watchers.drain_deadline)
    finally:
        for task in tasks:
            task.cancel()
        await _end(socket, conn, parts, ending, opened)


class _Tasks(NamedTuple):
    """What a connection waits on: its sender and receiver, the server's shutdown, a lost broker."""

    sender: asyncio.Task[None]
    receiver: asyncio.Task[Ending]
    closing: asyncio.Task[bool]
    lost: asyncio.Task[bool]

    @classmethod
    def start(cls, socket: WebSocket, conn: Connection, parts: WsParts) -> _Tasks:
        return cls(
            conn.start(),
            asyncio.create_task(_receive(socket, conn, parts), name=f"ws-recv-{conn.id}"),
            asyncio.create_task(parts.watchers.closing.wait()),
            asyncio.create_task(parts.watchers.broker_lost.wait()),
        )


def _open(socket: WebSocket, parts: WsParts, conn_id: str, principal: Principal) -> Connection:
    """The admitted watcher's connection: registered, counted, and greeted with ``hello``."""
    settings = parts.settings
    writer = direct_writer(socket.scope, conn_id) if settings.ws.direct_writes == "auto" else None
    conn = Connection(
        conn_id,
        socket.send,
        bus=parts.bus,
        max_lag=settings.ws.max_lag,
        send_timeout=settings.ws.send_timeout,
        frame_events=settings.ws.frame_events,
        frame_bytes=settings.ws.frame_bytes,
        heartbeat=settings.ws.heartbeat,
        metrics=parts.metrics,
        lane=parts.lane,
        writer=writer,
    )
    conn.principal = principal
    conn.feed_tenant = principal.scope
    conn.tenant_of = parts.service.tenant_of
    conn.presence = parts.presence if settings.ws.presence == "on" else None
    parts.watchers.connections.add(conn)
    parts.metrics.ws_opened.inc()
    log.debug(
        "ws.connected",
        conn=conn_id,
        principal=principal.id,
        client=socket.client.host if socket.client else None,
        direct_writes=writer is not None,
    )
    conn.post(encode(_hello(conn_id, principal, settings)))
    return conn


def _hello(conn_id: str, principal: Principal, settings: Settings) -> Hello:
    return Hello(
        connection=conn_id,
        version=__version__,
        offline=settings.model.offline,
        heartbeat=settings.ws.heartbeat,
        max_message_bytes=settings.ws.max_message_bytes,
        close_codes=CLOSE_CODES,
        principal={
            "id": principal.id,
            "name": principal.name,
            "tenant": principal.tenant,
            "role": principal.role.value,
        },
        expires_at=principal.expires_at,
        server_time=round(time.time(), 3),
    )


def _ending(conn: Connection, tasks: _Tasks, done: set[asyncio.Task]) -> Ending:
    """How the connection ends, from what of ``tasks`` is ``done``."""
    if tasks.lost in done and tasks.closing not in done:
        # The broker is gone: runs elsewhere cannot be followed from here. Reconnect (to any
        # instance) with your last seq; nothing published was lost.
        return Ending(CloseCode.SERVICE_RESTART, "broker unavailable; reconnect")
    if tasks.closing in done:
        return Ending(CloseCode.GOING_AWAY, "server shutdown")
    sender, receiver = tasks.sender, tasks.receiver
    if sender in done and conn.ended is not None:
        ending = Ending(CloseCode(conn.ended[0]), conn.ended[1])
        log.info("ws.ended", conn=conn.id, principal=_who(conn), code=int(ending.code), reason=ending.reason)
        return ending
    if sender in done and conn.cut_off is not None:
        return Ending(CloseCode.TRY_AGAIN_LATER, "slow consumer", SlowConsumer.SEND_TIMEOUT)
    if receiver in done and receiver.exception() is None:
        return receiver.result()
    failed = sender if sender in done else receiver
    exc = None if failed.cancelled() else failed.exception()
    # OSError: uvicorn's ClientDisconnected, the client left while we were sending.
    if exc is not None and not isinstance(exc, WebSocketDisconnect | OSError):
        log.error("ws.failed", conn=conn.id, error=repr(exc), exc_info=exc)
        return Ending(CloseCode.INTERNAL_ERROR, "error")
    return Ending(CloseCode.NORMAL, "client")


def _who(conn: Connection) -> str | None:
    return conn.principal.id if conn.principal is not None else None


async def _end(socket: WebSocket, conn: Connection, parts: WsParts, ending: Ending, opened: float) -> None:
    """Close with ``ending``'s code, count and log it, and give back the principal's connection lease."""
    principal = conn.principal
    assert principal is not None  # set by _open
    conn.close()
    _count_end(parts, ending)
    if ending.slow is not None:
        detail = conn.cut_off or ending.reason
        log.warning("ws.slow_consumer", conn=conn.id, principal=principal.id, reason=ending.slow.value, detail=detail)
    if ending.code != CloseCode.NORMAL and ending.slow is not SlowConsumer.PING_TIMEOUT:  # (uvicorn closed it)
        await _close(socket, ending)
    if principal.source != "off":  # the principal's place is free before the connection is gone
        try:
            await asyncio.wait_for(parts.limiter.close_connection(principal.id, conn.id), 1.0)
        except Exception:  # Redis away: the lease runs out by itself (agents/runs/limits.py)
            pass
    parts.watchers.connections.discard(conn)  # only now: shutdown waits for this, after our 1001 went out
    log.debug(
        "ws.disconnected",
        conn=conn.id,
        code=int(ending.code),
        reason=ending.reason,
        duration=round(time.monotonic() - opened, 3),
        frames=conn.frames_sent,
        direct_frames=conn.direct_frames,
        events=conn.events_sent,
        resyncs=conn.resyncs,
    )


async def _close(socket: WebSocket, ending: Ending) -> None:
    """Send the close frame. One that cannot even be handed to the transport within a second (a
    slow consumer's window stays full) never reaches its client: the connection is dropped then
    (``api.cutoff``), or it would hold its buffers until the client reads again."""
    try:
        await asyncio.wait_for(socket.close(code=ending.code, reason=ending.reason), 1.0)
    except TimeoutError:
        transport = getattr(sansio_protocol(socket.scope), "transport", None)
        if ending.slow is not None and transport is not None:
            drop(transport)
    except Exception:
        pass


def _count_end(parts: WsParts, ending: Ending) -> None:
    """Count how a connection ended; a slow consumer, whichever way it was cut, as one."""
    slow = ending.slow is not None
    parts.metrics.ws_closed.labels(
        CLOSE_REASONS[CloseCode.TRY_AGAIN_LATER] if slow else CLOSE_REASONS.get(ending.code, "error")
    ).inc()
    if slow:
        parts.metrics.slow_consumers.labels("disconnect", "ws").inc()


async def _drain(conn: Connection, sender: asyncio.Task[None], *, deadline: float) -> None:
    """At shutdown: let the sender deliver what this watcher is owed (final events), up to ``deadline``."""
    # Polled: "drained" spans the outbox, every subscription's cursor and the frame in flight.
    while not conn.drained() and not sender.done() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def _receive(socket: WebSocket, conn: Connection, parts: WsParts) -> Ending:
    """Read client frames until the client leaves; returns how the connection should close."""
    settings = parts.settings
    limit = settings.ws.max_message_bytes
    rate = MessageRate(settings.ws.message_rate, settings.ws.message_burst)
    while True:
        await conn.room()  # a client that sends faster than it reads waits here
        event = await socket.receive()
        if event["type"] == "websocket.disconnect":
            code = event.get("code")
            if code == CloseCode.MESSAGE_TOO_BIG:  # uvicorn enforces the size limit itself
                return Ending(CloseCode.MESSAGE_TOO_BIG, f"message over {limit} bytes")
            if code == CloseCode.INVALID_DATA:  # and closes on a text frame that is not UTF-8
                return Ending(CloseCode.INVALID_DATA, "text frame not UTF-8")
            if code in (1005, 1006) and _ping_timed_out(socket.scope):  # gone without a close frame of its own
                reason = f"no pong within {settings.ws.heartbeat:g} s (ping timeout)"
                return Ending(CloseCode.INTERNAL_ERROR, reason, SlowConsumer.PING_TIMEOUT)
            return Ending(CloseCode.NORMAL, "client")
        data = event.get("text")
        if data is None:
            data = event.get("bytes") or b""
        if len(data) > limit:
            return Ending(CloseCode.MESSAGE_TOO_BIG, f"message over {limit} bytes")
        if not rate.take():
            if rate.flooding:
                return Ending(CloseCode.POLICY_VIOLATION, "message flood")
            if rate.refused == 1:
                parts.metrics.limited("ws_messages")
                conn.post(
                    encode(
                        Error(
                            id=None,
                            code=ErrorCode.RATE_LIMITED,
                            message=f"more than {settings.ws.message_rate:g} messages a second; "
                            "messages are dropped until you slow down",
                        )
                    )
                )
            continue
        try:
            await handle(conn, parts, data)
        except ProtocolError as exc:
            conn.post(exc.to_message())
