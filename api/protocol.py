"""The WebSocket protocol in one place: client messages, server messages, error and close codes.

``docs/protocol.md`` documents the same names; server, docs and tests all use these constants.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

MessageId = str | int | None


# -- client → server ------------------------------------------------------------------------


class ClientMessage(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    id: MessageId = None


class Subscribe(ClientMessage, tag="subscribe"):
    run: str
    after: int = 0


class Unsubscribe(ClientMessage, tag="unsubscribe"):
    run: str


class Cancel(ClientMessage, tag="cancel"):
    run: str


class Start(ClientMessage, tag="start"):
    agent: str
    input: str = ""


class Ping(ClientMessage, tag="ping"):
    pass


AnyClientMessage = Subscribe | Unsubscribe | Cancel | Start | Ping
CLIENT_TYPES = frozenset({"subscribe", "unsubscribe", "cancel", "start", "ping"})


# -- server → client (events themselves are sent as-is) -------------------------------------


class Hello(msgspec.Struct, tag_field="type", tag="hello", kw_only=True):
    connection: str
    version: str
    offline: bool
    heartbeat: float
    max_message_bytes: int


class Ack(msgspec.Struct, tag_field="type", tag="ack", kw_only=True, omit_defaults=True):
    id: MessageId = None
    run: str | None = None
    #: For ``subscribe``: the position replay starts after. For ``cancel``: "cancelling".
    after: int | None = None
    status: str | None = None


class Error(msgspec.Struct, tag_field="type", tag="error", kw_only=True):
    id: MessageId
    code: str
    message: str


class Resync(msgspec.Struct, tag_field="type", tag="resync", kw_only=True):
    run: str
    after: int
    reason: str = "slow_consumer"


class Heartbeat(msgspec.Struct, tag_field="type", tag="heartbeat", kw_only=True):
    ts: float


class Pong(msgspec.Struct, tag_field="type", tag="pong", kw_only=True):
    id: MessageId = None


class ErrorCode(enum.StrEnum):
    BAD_JSON = "bad_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_TYPE = "unknown_type"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_RUN = "unknown_run"
    UNKNOWN_AGENT = "unknown_agent"
    ALREADY_FINISHED = "already_finished"
    QUEUE_FULL = "queue_full"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    SHUTTING_DOWN = "shutting_down"
    INPUT_TOO_LARGE = "input_too_large"


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    #: The server is shutting down; reconnect (with your last seq) after a moment.
    GOING_AWAY = 1001
    #: The client sent a frame over the size limit (``max_message_bytes`` in ``hello``).
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    #: Slow consumer: a frame was not taken within the send timeout. Reconnect and resubscribe.
    TRY_AGAIN_LATER = 1013


_encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> str:
    return _encoder.encode(message).decode()


class ProtocolError(Exception):
    def __init__(self, code: ErrorCode, message: str, message_id: MessageId = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.message_id = message_id

    def to_message(self) -> str:
        return encode(Error(id=self.message_id, code=self.code, message=self.message))


def parse_client_message(text: str | bytes) -> AnyClientMessage:
    """Decode one client frame or raise ``ProtocolError`` saying exactly what is wrong."""
    try:
        raw: Any = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"malformed JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.NOT_AN_OBJECT, 'a message must be a JSON object with a "type"')
    message_id = raw.get("id") if isinstance(raw.get("id"), str | int) else None
    kind = raw.get("type")
    if kind not in CLIENT_TYPES:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {kind!r}; expected one of {', '.join(sorted(CLIENT_TYPES))}",
            message_id,
        )
    try:
        return msgspec.convert(raw, AnyClientMessage)
    except msgspec.ValidationError as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"invalid {kind} message: {exc}", message_id) from None
