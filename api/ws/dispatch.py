"""What each WebSocket client message does: parse it, ask the run service, post the reply.

Every refusal is a ``ProtocolError`` carrying an ``ErrorCode`` (``runwatch.agents.errors``); the
receive loop turns it into an ``error`` message and the connection keeps working.
"""

from __future__ import annotations

import time

import msgspec

from runwatch.agents.errors import ErrorCode, RunwatchError
from runwatch.agents.events import RunStatus
from runwatch.agents.identity import Role
from runwatch.agents.runs.inbox import Decision
from runwatch.api.auth.authenticator import AuthFailed
from runwatch.api.ws.connection import Connection
from runwatch.api.ws.parts import WsParts
from runwatch.api.ws.protocol import (
    Ack,
    Approve,
    Auth,
    Cancel,
    Deny,
    Ping,
    Pong,
    ProtocolError,
    Resync,
    SendMessage,
    Start,
    Subscribe,
    Unsubscribe,
    encode,
    parse_client_message,
)


class MessageRate:
    """A token bucket over one connection's messages: ``rate`` a second, bursts up to ``burst``.

    ``take`` says whether a message may be handled now. Past the bucket, the first refused message
    gets a ``rate_limited`` error and the rest are dropped; ``flooding`` turns true once a client
    has sent ``burst`` more while refused, and the connection is then closed (1008).
    """

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens", "refused")

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self.refused = 0

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.refused = 0
            return True
        self.refused += 1
        return False

    @property
    def flooding(self) -> bool:
        return self.refused > self._burst


async def handle(conn: Connection, parts: WsParts, text: str | bytes) -> None:
    try:
        message = parse_client_message(text)
    except ProtocolError:
        parts.metrics.ws_received.labels("invalid").inc()
        raise
    parts.metrics.ws_received.labels(message.__struct_config__.tag).inc()
    mid = message.id
    principal = conn.principal
    try:
        match message:
            case Subscribe(run=run, after=after, epoch=epoch):
                await _subscribe(conn, parts, run, after, epoch, mid)
            case Unsubscribe(run=run):
                if not conn.unsubscribe(run):
                    raise ProtocolError(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {run!r}", mid)
                conn.post(encode(Ack(id=mid, run=run)))
            case Cancel(run=run):
                _require(principal, Role.OPERATOR, "cancel", mid)
                status = await parts.service.cancel(run, principal=principal)
                done = status is RunStatus.CANCELLED
                conn.post(encode(Ack(id=mid, run=run, status="cancelled" if done else "cancelling")))
            case Start(agent=agent, input=text_input, thread=thread, if_busy=if_busy):
                _require(principal, Role.OPERATOR, "start", mid)
                handle = await parts.service.start(
                    agent, text_input, principal=principal, thread=thread, if_busy=if_busy
                )
                conn.post(encode(Ack(id=mid, run=handle.id, status="queued", thread=handle.thread)))
            case Approve(run=run, approval=approval, arguments=arguments):
                _require(principal, Role.OPERATOR, "approve", mid)
                edited = msgspec.UNSET if arguments is None else arguments
                await parts.service.decide(run, approval, Decision(approve=True, arguments=edited), principal=principal)
                conn.post(encode(Ack(id=mid, run=run, status="approved")))
            case Deny(run=run, approval=approval, message=reason):
                _require(principal, Role.OPERATOR, "deny", mid)
                await parts.service.decide(run, approval, Decision(approve=False, message=reason), principal=principal)
                conn.post(encode(Ack(id=mid, run=run, status="denied")))
            case SendMessage(run=run, text=said, mode=mode):
                _require(principal, Role.OPERATOR, "message", mid)
                await parts.service.message(run, said, mode, principal=principal)
                conn.post(encode(Ack(id=mid, run=run, status="accepted")))
            case Ping():
                conn.post(encode(Pong(id=mid)))
            case Auth(token=token):
                await _reauthenticate(conn, parts, token, mid)
    except ProtocolError:
        raise
    except RunwatchError as exc:
        raise ProtocolError.of(exc, mid) from None


def _require(principal, role: Role, action: str, mid: object) -> None:
    if not principal.can(role):
        raise ProtocolError(ErrorCode.FORBIDDEN, f"{action} needs the {role.value} role; you are {principal.role}", mid)


async def _reauthenticate(conn: Connection, parts: WsParts, token: str, mid: object) -> None:
    """A fresh token for the same principal, before the current one expires: the socket stays open."""
    if not parts.settings.auth.on:
        conn.post(encode(Ack(id=mid)))
        return
    try:
        fresh = await parts.auth.bearer(token)
    except AuthFailed as exc:
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, exc.message, mid) from None
    current = conn.principal
    if (fresh.id, fresh.tenant, fresh.role) != (current.id, current.tenant, current.role):
        # Another principal, or the same one with another role or tenant: what this socket follows
        # was checked against the old one. Open a new connection for it.
        raise ProtocolError(
            ErrorCode.FORBIDDEN, "the token is for another principal, role or tenant; open a new connection", mid
        )
    conn.principal = fresh
    conn.feed_tenant = fresh.scope
    conn.post(encode(Ack(id=mid)))


async def _subscribe(conn: Connection, parts: WsParts, run: str, after: int, epoch: str | None, mid: object) -> None:
    limit = parts.settings.ws.max_subscriptions
    if run not in conn.subscriptions and len(conn.subscriptions) >= limit:
        parts.metrics.limited("ws_subscriptions")
        raise ProtocolError(
            ErrorCode.TOO_MANY_SUBSCRIPTIONS, f"at most {limit} subscriptions per connection; unsubscribe first", mid
        )
    resume = await parts.service.resume(run, after, epoch, principal=conn.principal)
    if resume.resync is not None:
        conn.unsubscribe(run)
        conn.post(encode(Resync(id=mid, run=run, after=resume.after, epoch=resume.epoch, reason=resume.resync)))
        return
    conn.post(encode(Ack(id=mid, run=run, after=resume.after, epoch=resume.epoch)))
    conn.subscribe(run, resume.after)
