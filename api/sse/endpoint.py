"""``GET /api/runs/{id}/stream``: the SSE fallback, resuming from ``Last-Event-ID`` (a seq).

Every SSE event is one run event: ``id`` is its seq, ``data`` its JSON. The stream ends after
``run.finished``; clients should then close their ``EventSource`` (it would reconnect otherwise).
A quiet stream gets a comment line (``: heartbeat``) every ``RUNWATCH_HEARTBEAT`` seconds: a
comment only, never an empty ``data:`` (which an ``EventSource`` would deliver as an empty message).

A principal's SSE streams and WebSockets are one count (``RUNWATCH_WS_CONNECTIONS_PER_PRINCIPAL``):
a stream past it is refused with 429 ``too_many_connections``. Slow readers: see ``api.sse_stream``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

import msgspec
import structlog
from litestar import Request, get
from litestar.background_tasks import BackgroundTask
from litestar.openapi import ResponseSpec
from litestar.params import Parameter
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from runwatch.agents.errors import BadRequest, ErrorCode, TooManyConnections
from runwatch.agents.identity import Principal, Role
from runwatch.api.auth.web import requires
from runwatch.api.http_errors import error_responses
from runwatch.api.rest.runs import AUTH_ERRORS, MAX_AFTER
from runwatch.api.sse.parts import SseParts
from runwatch.api.sse.stream import SSEStream, http_transport
from runwatch.api.ws.framing import Scope

log = structlog.get_logger()

PAGE = 500

#: ``: heartbeat`` and the blank line that ends it: a comment, which clients ignore (``data=None``:
#: Litestar's default of ``""`` would add an empty ``data:`` line, an empty message to clients).
HEARTBEAT = ServerSentEventMessage(data=None, comment="heartbeat")


class SSEEvent(msgspec.Struct):
    """One Server-Sent Event as a client parses it (the OpenAPI schema of an event-stream's items)."""

    data: str
    id: str | None = None
    event: str = "message"


@get(
    "/api/runs/{run_id:str}/stream",
    tags=["runs"],
    summary="Follow a run over Server-Sent Events",
    responses={
        200: ResponseSpec(
            SSEEvent,
            media_type="text/event-stream",
            description="One SSE event per run event: id is its seq, data its JSON; ends after run.finished",
            generate_examples=False,
        ),
        **error_responses(
            ErrorCode.UNKNOWN_RUN, ErrorCode.AFTER_BEYOND_HEAD, ErrorCode.TOO_MANY_CONNECTIONS, *AUTH_ERRORS
        ),
    },
    guards=[requires(Role.VIEWER)],
)
async def run_stream(
    run_id: str,
    request: Request,
    sse_parts: SseParts,
    after: Annotated[int, Parameter(ge=0, le=MAX_AFTER)] = 0,
) -> ServerSentEvent:
    header = request.headers.get("last-event-id")
    if header is not None:
        digits = header.lstrip("0") or "0"  # int() refuses over 4300 digits, even zeros
        if not header.isascii() or not header.isdigit() or len(digits) > 19:
            raise BadRequest("Last-Event-ID must be the seq of the last event you received")
        after = int(digits)
    parts = sse_parts
    cursor = await parts.service.resume_run(run_id, after, principal=request.user)
    stream = await _open(parts, run_id, request.user, request.scope)
    return ServerSentEvent(
        _events(parts, stream, cursor),
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        # Also when the stream never started (the client left first): its slot must be given back.
        background=BackgroundTask(_close, parts, stream, "client"),
    )


async def _open(parts: SseParts, run_id: str, principal: Principal, scope: Scope) -> SSEStream:
    """Count the stream against its principal (with its WebSockets) and register it, or refuse it."""
    stream = SSEStream(
        run_id,
        principal,
        send_timeout=parts.settings.ws.send_timeout,
        metrics=parts.metrics,
        transport=http_transport(scope),
    )
    limit = parts.settings.ws.connections_per_principal
    if principal.source != "off" and not await parts.limiter.open_connection(principal.id, stream.id, limit):
        parts.metrics.limited("sse_streams")
        raise TooManyConnections(
            f"at most {limit} WebSockets and SSE streams may be open at once per principal "
            "(RUNWATCH_WS_CONNECTIONS_PER_PRINCIPAL); close one of yours, then try again"
        )
    parts.bus.watch(run_id, stream)
    parts.watchers.sse_streams.add(stream)
    parts.metrics.sse_opened.inc()
    return stream


async def _close(parts: SseParts, stream: SSEStream, ended: str) -> None:
    """Give back what the stream holds (once, whichever of its generator and the response's
    background task comes first) and log how it ended."""
    if stream.closed:
        return
    stream.closed = True
    if stream.cut_off is not None:  # (the response may have been cancelled before its generator saw it)
        ended = "slow_consumer"
    parts.bus.unwatch(stream.run_id, stream)
    parts.watchers.sse_streams.discard(stream)
    log.info(
        "sse.closed",
        stream=stream.id,
        run_id=stream.run_id,
        principal=stream.principal.id,
        ended=ended,
        sent=stream.sent,
        duration=round(time.monotonic() - stream.opened, 3),
    )
    if stream.principal.source != "off":
        # Shielded: a generator closed by a cancelled response gets cancelled again at every await.
        await asyncio.shield(asyncio.ensure_future(_release(parts, stream)))


async def _release(parts: SseParts, stream: SSEStream) -> None:
    try:
        await asyncio.wait_for(parts.limiter.close_connection(stream.principal.id, stream.id), 1.0)
    except Exception:  # Redis away: the lease runs out by itself (agents/runs/limits.py)
        pass


async def _still_allowed(parts: SseParts, principal: Principal) -> bool:
    """The stream's credential has neither expired nor been revoked (checked between pages and at
    each heartbeat; a key's revocation is seen within seconds, as on the WebSocket)."""
    if principal.expires_at is not None and time.time() >= principal.expires_at:
        return False
    return principal.key_id is None or not await parts.auth.is_revoked(principal.key_id)


async def _events(parts: SseParts, stream: SSEStream, cursor: int) -> AsyncIterator[ServerSentEventMessage]:
    """The run's events after ``cursor``, then live ones until ``run.finished``; a heartbeat
    comment after each ``heartbeat`` seconds of silence. Each send is timed for the watchdog."""
    run_id, ended = stream.run_id, "client"  # unless it ends below: the client left
    monotonic = time.monotonic
    try:
        while stream.cut_off is None:
            closing = parts.watchers.closing.is_set()  # read once more after it is set: the final events
            stream.wake.clear()
            items = await parts.bus.read(run_id, cursor, PAGE)
            for p in items:
                stream.send_started = monotonic()
                yield ServerSentEventMessage(data=p.text, id=p.seq)
                stream.send_started = None  # the client's socket (or uvicorn's buffer) took it
                stream.sent += 1
                if stream.cut_off is not None:
                    break
            if stream.cut_off is not None:
                break
            if items:
                cursor = items[-1].seq
                if items[-1].type == "run.finished":
                    ended = "finished"
                    return
                if not await _still_allowed(parts, stream.principal):
                    ended = "credential"
                    return
                continue
            if closing:
                ended = "server_shutdown"
                return
            if not await _still_allowed(parts, stream.principal):
                ended = "credential"
                return
            summary = await parts.service.get(run_id, principal=stream.principal)  # known: resume_run checked it
            if summary.status.finished and cursor >= summary.last_seq:
                ended = "finished"
                return
            try:
                await asyncio.wait_for(stream.wake.wait(), parts.settings.ws.heartbeat)
            except TimeoutError:
                stream.send_started = monotonic()
                yield HEARTBEAT
                stream.send_started = None
                stream.sent += 1
        ended = "slow_consumer"
    finally:
        await _close(parts, stream, ended)
