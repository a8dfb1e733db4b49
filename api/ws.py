"""``/ws``: the WebSocket endpoint — a receive loop that dispatches client messages, and a sender.

See ``docs/protocol.md`` for every message. Bad input gets an ``error`` message and the
connection keeps working; only an oversized frame (1009) or a slow consumer (1013) ends it.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import structlog
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from runwatch.agents.agent import UnknownAgent
from runwatch.agents.bus import LIFECYCLE
from runwatch.agents.events import RunStatus
from runwatch.agents.supervisor import InputTooLarge, QueueFull, RunAlreadyFinished, ShuttingDown, UnknownRun
from runwatch.api import __version__
from runwatch.api.connection import Connection, SlowConsumer
from runwatch.api.framing import direct_writer
from runwatch.api.protocol import (
    Ack,
    Cancel,
    CloseCode,
    ErrorCode,
    Hello,
    Ping,
    Pong,
    ProtocolError,
    Start,
    Subscribe,
    Unsubscribe,
    encode,
    parse_client_message,
)
from runwatch.api.runtime import Runtime

log = structlog.get_logger()

#: Close code → the ``reason`` label of ``runwatch_ws_connections_closed_total``.
_CLOSE_REASONS = {
    CloseCode.NORMAL: "client",
    CloseCode.GOING_AWAY: "server_shutdown",
    CloseCode.TRY_AGAIN_LATER: "slow_consumer",
    CloseCode.MESSAGE_TOO_BIG: "message_too_big",
    CloseCode.INTERNAL_ERROR: "error",
}


async def _handle(conn: Connection, rt: Runtime, text: str | bytes) -> None:
    try:
        message = parse_client_message(text)
    except ProtocolError:
        rt.metrics.ws_received.labels("invalid").inc()
        raise
    rt.metrics.ws_received.labels(message.__struct_config__.tag).inc()
    mid = message.id
    match message:
        case Subscribe(run=run, after=after):
            if run not in conn.subscriptions and len(conn.subscriptions) >= rt.settings.ws_max_subscriptions:
                raise ProtocolError(
                    ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                    f"at most {rt.settings.ws_max_subscriptions} subscriptions per connection; unsubscribe first",
                    mid,
                )
            if after < 0:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, "after must be 0 or more", mid)
            if run != LIFECYCLE and not await rt.history.exists(run):
                raise ProtocolError(ErrorCode.UNKNOWN_RUN, f"no run {run!r}", mid)
            conn.post(encode(Ack(id=mid, run=run, after=after)))
            conn.subscribe(run, after)
        case Unsubscribe(run=run):
            if not conn.unsubscribe(run):
                raise ProtocolError(ErrorCode.UNKNOWN_RUN, f"not subscribed to {run!r}", mid)
            conn.post(encode(Ack(id=mid, run=run)))
        case Cancel(run=run):
            try:
                status = await rt.supervisor.cancel(run)
            except UnknownRun as exc:
                raise ProtocolError(ErrorCode.UNKNOWN_RUN, str(exc), mid) from None
            except RunAlreadyFinished as exc:
                raise ProtocolError(ErrorCode.ALREADY_FINISHED, str(exc), mid) from None
            done = status is RunStatus.CANCELLED
            conn.post(encode(Ack(id=mid, run=run, status="cancelled" if done else "cancelling")))
        case Start(agent=agent, input=text_input):
            try:
                handle = await rt.supervisor.start(agent, text_input)
            except UnknownAgent as exc:
                raise ProtocolError(ErrorCode.UNKNOWN_AGENT, str(exc), mid) from None
            except InputTooLarge as exc:
                raise ProtocolError(ErrorCode.INPUT_TOO_LARGE, str(exc), mid) from None
            except QueueFull as exc:
                raise ProtocolError(ErrorCode.QUEUE_FULL, str(exc), mid) from None
            except ShuttingDown as exc:
                raise ProtocolError(ErrorCode.SHUTTING_DOWN, str(exc), mid) from None
            conn.post(encode(Ack(id=mid, run=handle.id, status="queued")))
        case Ping():
            conn.post(encode(Pong(id=mid)))


@websocket("/ws")
async def ws_endpoint(socket: WebSocket, rt: Runtime) -> None:
    settings = rt.settings
    conn_id = secrets.token_hex(4)
    await socket.accept()
    writer = direct_writer(socket.scope)
    conn = Connection(
        conn_id,
        socket.send,
        bus=rt.bus,
        history=rt.history,
        max_lag=settings.ws_max_lag,
        send_timeout=settings.ws_send_timeout,
        frame_events=settings.ws_frame_events,
        frame_bytes=settings.ws_frame_bytes,
        heartbeat=settings.heartbeat,
        metrics=rt.metrics,
        lane=rt.fast_lane,
        writer=writer,
    )
    rt.connections.add(conn)
    rt.metrics.ws_opened.inc()
    opened = time.monotonic()
    close_code, reason = CloseCode.NORMAL, "client"
    log.info(
        "ws.connected",
        conn=conn_id,
        client=socket.client.host if socket.client else None,
        direct_writes=writer is not None,
    )
    conn.post(
        encode(
            Hello(
                connection=conn_id,
                version=__version__,
                offline=settings.offline,
                heartbeat=settings.heartbeat,
                max_message_bytes=settings.ws_max_message_bytes,
            )
        )
    )
    sender = conn.start()
    receiver = asyncio.create_task(_receive(socket, conn, rt), name=f"ws-recv-{conn_id}")
    closing = asyncio.create_task(rt.closing.wait())
    try:
        done, _ = await asyncio.wait({sender, receiver, closing}, return_when=asyncio.FIRST_COMPLETED)
        if closing in done:
            close_code, reason = CloseCode.GOING_AWAY, "server shutdown"
        elif sender in done and conn.cut_off is not None:
            close_code, reason = CloseCode.TRY_AGAIN_LATER, "slow consumer"
            log.warning("ws.slow_consumer", conn=conn_id, error=conn.cut_off)
        elif receiver in done and receiver.exception() is None:
            close_code, reason = receiver.result()
        else:
            failed = sender if sender in done else receiver
            exc = None if failed.cancelled() else failed.exception()
            # OSError: uvicorn's ClientDisconnected, the client left while we were sending.
            if exc is not None and not isinstance(exc, WebSocketDisconnect | OSError):
                log.error("ws.failed", conn=conn_id, error=repr(exc))
                close_code, reason = CloseCode.INTERNAL_ERROR, "error"
    finally:
        for task in (sender, receiver, closing):
            task.cancel()
        conn.close()
        rt.connections.discard(conn)
        rt.metrics.ws_closed.labels(_CLOSE_REASONS.get(close_code, "error")).inc()
        if close_code == CloseCode.TRY_AGAIN_LATER:
            rt.metrics.slow_consumers.labels("disconnect").inc()
        if reason != "client":
            try:
                await asyncio.wait_for(socket.close(code=close_code, reason=reason), 1.0)
            except Exception:
                pass
        log.info(
            "ws.disconnected",
            conn=conn_id,
            code=int(close_code),
            reason=reason,
            duration=round(time.monotonic() - opened, 3),
            frames=conn.frames_sent,
            direct_frames=conn.direct_frames,
            events=conn.events_sent,
            resyncs=conn.resyncs,
        )


async def _receive(socket: WebSocket, conn: Connection, rt: Runtime) -> tuple[CloseCode, str]:
    """Read client frames until the client leaves; returns how the connection should close."""
    limit = rt.settings.ws_max_message_bytes
    while True:
        event = await socket.receive()
        if event["type"] == "websocket.disconnect":
            return CloseCode.NORMAL, "client"
        data = event.get("text")
        if data is None:
            data = event.get("bytes") or b""
        if len(data) > limit:
            return CloseCode.MESSAGE_TOO_BIG, f"message over {limit} bytes"
        try:
            await _handle(conn, rt, data)
        except ProtocolError as exc:
            conn.post(exc.to_message())
        except SlowConsumer:
            return CloseCode.TRY_AGAIN_LATER, "slow consumer"
