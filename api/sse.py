"""``GET /api/runs/{id}/stream``: the SSE fallback, resuming from ``Last-Event-ID`` (a seq).

Every SSE event is one run event: ``id`` is its seq, ``data`` its JSON. The stream ends after
``run.finished``; clients should then close their ``EventSource`` (it would reconnect otherwise).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

import msgspec
from litestar import Request, get
from litestar.openapi import ResponseSpec
from litestar.params import Parameter
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from runwatch.agents.errors import BadRequest, ErrorCode
from runwatch.agents.identity import Role
from runwatch.api.auth.web import requires
from runwatch.api.http_errors import error_responses
from runwatch.api.runs import AUTH_ERRORS, MAX_AFTER
from runwatch.api.runtime import Runtime

PAGE = 500


class SSEEvent(msgspec.Struct):
    """One Server-Sent Event as a client parses it (the OpenAPI schema of an event-stream's items)."""

    data: str
    id: str | None = None
    event: str = "message"


class _Wake:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def notify(self, stream: str, head: int) -> None:
        self.event.set()


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
        **error_responses(ErrorCode.UNKNOWN_RUN, ErrorCode.AFTER_BEYOND_HEAD, *AUTH_ERRORS),
    },
    guards=[requires(Role.VIEWER)],
)
async def run_stream(
    run_id: str,
    request: Request,
    rt: Runtime,
    after: Annotated[int, Parameter(ge=0, le=MAX_AFTER)] = 0,
) -> ServerSentEvent:
    header = request.headers.get("last-event-id")
    if header is not None:
        digits = header.lstrip("0") or "0"  # int() refuses over 4300 digits, even zeros
        if not header.isascii() or not header.isdigit() or len(digits) > 19:
            raise BadRequest("Last-Event-ID must be the seq of the last event you received")
        after = int(digits)
    principal = request.user
    cursor = await rt.service.resume_run(run_id, after, principal)

    async def still_allowed() -> bool:
        """The stream's credential has neither expired nor been revoked (checked between pages and
        at each heartbeat; a key's revocation is seen within seconds, as on the WebSocket)."""
        if principal.expires_at is not None and time.time() >= principal.expires_at:
            return False
        return principal.key_id is None or not await rt.auth.is_revoked(principal.key_id)

    async def events() -> AsyncIterator[ServerSentEventMessage]:
        nonlocal cursor
        wake = _Wake()
        rt.bus.watch(run_id, wake)
        rt.sse_streams.add(wake)
        rt.metrics.sse_opened.inc()
        try:
            while True:
                closing = rt.closing.is_set()  # read once more after it is set: the final events
                wake.event.clear()
                items = await rt.bus.read(run_id, cursor, PAGE)
                for p in items:
                    yield ServerSentEventMessage(data=p.text, id=p.seq)
                if items:
                    cursor = items[-1].seq
                    if items[-1].type == "run.finished" or not await still_allowed():
                        return
                    continue
                if closing or not await still_allowed():
                    return
                summary = await rt.service.get(run_id)  # known: resume_run checked it
                if summary.status.finished and cursor >= summary.last_seq:
                    return
                try:
                    await asyncio.wait_for(wake.event.wait(), rt.settings.heartbeat)
                except TimeoutError:
                    yield ServerSentEventMessage(comment="heartbeat")
        finally:
            rt.bus.unwatch(run_id, wake)
            rt.sse_streams.discard(wake)

    return ServerSentEvent(events(), headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
