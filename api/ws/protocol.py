"""The WebSocket protocol in one place: client messages and server messages.

Error and close codes are named in ``runwatch.agents.errors``; ``docs/protocol.md`` documents the
same names, and server, docs, tests and dashboard all use them.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from runwatch.agents.errors import FINAL, LOG_IN_AGAIN, CloseCode, ErrorCode, ResyncReason, RunwatchError
from runwatch.agents.events import tags
from runwatch.agents.runs.inbox import Mode
from runwatch.agents.runs.threads import IfBusy

__all__ = ["CloseCode", "ErrorCode", "ResyncReason"]

MessageId = str | int | None
#: A position in a log: a seq, or a runs-feed position. SQLite and PostgreSQL hold signed 64-bit.
Position = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


# -- client → server ------------------------------------------------------------------------


class ClientMessage(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    id: MessageId = None


class Subscribe(ClientMessage, tag="subscribe"):
    run: str
    after: Position = 0
    #: The epoch of the log ``after`` belongs to (from an earlier ``ack``, or ``feed_epoch`` of
    #: ``GET /api/runs``); if the log's epoch changed since, the answer is ``resync``.
    epoch: str | None = None


class Unsubscribe(ClientMessage, tag="unsubscribe"):
    run: str


class Cancel(ClientMessage, tag="cancel"):
    run: str


class Start(ClientMessage, tag="start"):
    agent: str
    input: str = ""
    #: Continue this thread (its earlier runs are the model's context); omitted: a new thread.
    thread: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    #: When the thread has an active run: refuse (``thread_busy``), run after it, or cancel it.
    if_busy: IfBusy = "reject"


class Approve(ClientMessage, tag="approve"):
    run: str
    approval: Annotated[str, msgspec.Meta(max_length=64)]
    #: Call the tool with these instead of the model's (checked against the tool's schema).
    arguments: dict[str, Any] | None = None


class Deny(ClientMessage, tag="deny"):
    run: str
    approval: Annotated[str, msgspec.Meta(max_length=64)]
    #: What the model gets as the tool's result (default: that the user denied the call).
    message: str | None = None


class SendMessage(ClientMessage, tag="message"):
    """Tell a running agent something: ``interrupt`` cuts its current answer, ``queue`` waits for the step."""

    run: str
    text: str
    mode: Mode = "queue"


class Ping(ClientMessage, tag="ping"):
    pass


class Auth(ClientMessage, tag="auth"):
    """A fresh token (or key) for the connection's principal, sent before the current one expires."""

    token: Annotated[str, msgspec.Meta(max_length=16_384)]


AnyClientMessage = Subscribe | Unsubscribe | Cancel | Start | Ping | Auth | Approve | Deny | SendMessage
#: Every client message's ``type``, in ``AnyClientMessage``'s order.
CLIENT_TYPES = tags(AnyClientMessage)


# -- server → client (events themselves are sent as-is) -------------------------------------


class CloseCodes(msgspec.Struct, kw_only=True, frozen=True):
    """Which close codes end reconnecting (``agents/errors.py``'s ``FINAL`` and ``LOG_IN_AGAIN``):
    after one in ``final``, reconnecting as before cannot help; after one in ``log_in_again`` (all
    of them final too), log in again (or get a fresh token) first. After any other close, reconnect
    with each run's last seq."""

    final: list[CloseCode]
    log_in_again: list[CloseCode]


#: What every ``hello`` says of close codes: the server's terms, so a client need not keep its own copy.
CLOSE_CODES = CloseCodes(final=sorted(FINAL), log_in_again=sorted(LOG_IN_AGAIN))


class Hello(msgspec.Struct, tag_field="type", tag="hello", kw_only=True):
    connection: str
    version: str
    offline: bool
    heartbeat: float
    max_message_bytes: int
    #: The close codes after which this client must not reconnect as before (``CLOSE_CODES``).
    close_codes: CloseCodes
    #: Who this connection is (``id``, ``name``, ``tenant``, ``role``), and when its credential
    #: expires (epoch seconds; null if never): send ``auth`` with a fresh token before then.
    principal: dict[str, str] | None = None
    expires_at: float | None = None
    #: The server's clock when it sent this (epoch seconds): events' ``ts`` are on it, so a client
    #: that shows "how long ago" corrects its own clock by the difference.
    server_time: float = 0.0


class Ack(msgspec.Struct, tag_field="type", tag="ack", kw_only=True, omit_defaults=True):
    id: MessageId = None
    run: str | None = None
    #: For ``subscribe``: the position replay starts after, and the log's epoch.
    after: int | None = None
    epoch: str | None = None
    #: For ``cancel``: "cancelling" or "cancelled"; for ``start``: "queued"; for ``approve``/``deny``:
    #: "approved"/"denied"; for ``message``: "accepted".
    status: str | None = None
    #: For ``start``: the run's thread.
    thread: str | None = None


class Error(msgspec.Struct, tag_field="type", tag="error", kw_only=True):
    id: MessageId
    code: str
    message: str


class Resync(msgspec.Struct, tag_field="type", tag="resync", kw_only=True, omit_defaults=True):
    """Subscribe to ``run`` again from ``after`` (in ``epoch``); its live flow stopped. ``reason``
    says why: ``slow_consumer``, ``epoch_changed`` (drop what you hold of it first) or
    ``feed_trimmed`` (reload the runs list)."""

    run: str
    after: int
    epoch: str
    reason: ResyncReason
    #: Set when this answers a ``subscribe`` (it then replaces the ``ack``).
    id: MessageId = None


class Watcher(msgspec.Struct, kw_only=True):
    id: str
    name: str


class Presence(msgspec.Struct, tag_field="type", tag="presence", kw_only=True):
    """Who watches ``run`` now (sent to its subscribers when someone joins or leaves; not an event:
    no seq). ``watchers``: the principals (at most ``MAX_SHOWN``), ``count``: how many in all."""

    run: str
    watchers: list[Watcher]
    count: int


class Heartbeat(msgspec.Struct, tag_field="type", tag="heartbeat", kw_only=True):
    ts: float


class Pong(msgspec.Struct, tag_field="type", tag="pong", kw_only=True):
    id: MessageId = None


_encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> str:
    return _encoder.encode(message).decode()


class ProtocolError(RunwatchError):
    """A client message refused, with the ``id`` to echo in the ``error`` reply."""

    def __init__(self, code: ErrorCode, message: str, message_id: MessageId = None) -> None:
        super().__init__(message, code=code)
        self.message_id = message_id

    @classmethod
    def of(cls, error: RunwatchError, message_id: MessageId) -> ProtocolError:
        return cls(error.code, error.message, message_id)

    def to_message(self) -> str:
        return encode(Error(id=self.message_id, code=self.code, message=self.message))


def parse_client_message(text: str | bytes) -> AnyClientMessage:
    """Decode one client frame or raise ``ProtocolError`` saying exactly what is wrong."""
    try:
        raw: Any = msgspec.json.decode(text)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"malformed JSON: {_short(exc)}") from None
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.NOT_AN_OBJECT, 'a message must be a JSON object with a "type"')
    message_id = raw.get("id")
    if not isinstance(message_id, str | int) or isinstance(message_id, bool) or len(str(message_id)) > 100:
        message_id = None
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in CLIENT_TYPES:
        shown = repr(kind) if isinstance(kind, str | None) else f"of JSON type {type(kind).__name__}"
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {shown[:100]}; expected one of {', '.join(sorted(CLIENT_TYPES))}",
            message_id,
        )
    try:
        return msgspec.convert(raw, AnyClientMessage)
    except (msgspec.ValidationError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"invalid {kind} message: {_short(exc)}", message_id) from None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"
