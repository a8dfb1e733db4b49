"""Every way a request can fail and a connection can end, named once.

The server (REST, WebSocket, SSE), the docs, the tests and the dashboard all use these names, as
centrifuge's ``disconnect.go`` does for its clients. A ``RunwatchError`` carries its ``ErrorCode``;
each transport turns it into its own shape (an HTTP status + JSON body, a WebSocket ``error``
message) through ``HTTP_STATUS`` and nowhere else.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    # -- a client message or request that cannot be understood
    BAD_JSON = "bad_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_TYPE = "unknown_type"
    BAD_MESSAGE = "bad_message"
    BAD_REQUEST = "bad_request"
    EMPTY_INPUT = "empty_input"
    INPUT_TOO_LARGE = "input_too_large"
    #: A request line and headers over ``RUNWATCH_MAX_HEADER_BYTES``, or more than ``RUNWATCH_MAX_HEADERS``.
    HEADERS_TOO_LARGE = "headers_too_large"
    #: A request (head and body) that did not arrive whole within ``RUNWATCH_REQUEST_TIMEOUT``.
    REQUEST_TIMEOUT = "request_timeout"
    # -- who is asking
    #: No credential, or one that is forged, expired, revoked or for another issuer or audience.
    UNAUTHENTICATED = "unauthenticated"
    #: A known principal whose role does not allow this (or a request that failed the CSRF or Origin check).
    FORBIDDEN = "forbidden"
    #: A request or handshake whose ``Host`` the server does not answer (DNS rebinding): see
    #: ``RUNWATCH_ALLOWED_HOSTS``.
    HOST_NOT_ALLOWED = "host_not_allowed"
    # -- understood, but refused
    UNKNOWN_RUN = "unknown_run"
    #: ``DELETE /api/keys/{id}`` of a key that does not exist or is already revoked.
    UNKNOWN_KEY = "unknown_key"
    NOT_SUBSCRIBED = "not_subscribed"
    #: No such approval in that run (or the run is not waiting for it here).
    UNKNOWN_APPROVAL = "unknown_approval"
    #: ``GET /api/threads/{id}`` or ``thread`` of a start naming no thread of yours.
    UNKNOWN_THREAD = "unknown_thread"
    #: Another decision on that approval came first (or it expired).
    ALREADY_DECIDED = "already_decided"
    #: Edited arguments of an approval that the tool's schema refuses.
    INVALID_ARGUMENTS = "invalid_arguments"
    #: A message to a run that has not started yet.
    NOT_STARTED = "not_started"
    #: The thread has an active run and the start said ``"if_busy": "reject"`` (the default).
    THREAD_BUSY = "thread_busy"
    UNKNOWN_AGENT = "unknown_agent"
    ALREADY_FINISHED = "already_finished"
    AFTER_BEYOND_HEAD = "after_beyond_head"
    QUEUE_FULL = "queue_full"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    #: An SSE stream past the principal's count of open WebSockets and SSE streams together
    #: (``RUNWATCH_WS_CONNECTIONS_PER_PRINCIPAL``); a WebSocket past it closes with 1013 instead.
    TOO_MANY_CONNECTIONS = "too_many_connections"
    RATE_LIMITED = "rate_limited"
    SHUTTING_DOWN = "shutting_down"
    #: The broker (Redis) is unreachable: runs cannot be queued or cancelled elsewhere right now.
    UNAVAILABLE = "unavailable"
    #: The server holds ``RUNWATCH_MAX_CONNECTIONS`` connections: a new one, or one still waiting
    #: for its request, is answered this and closed.
    SERVER_BUSY = "server_busy"
    # -- the ingest API (an agent running elsewhere reports its runs: docs/ingest.md)
    #: An event type only runwatch writes (``run.cancel_requested``, ``approval.resolved`` …).
    RESERVED_TYPE = "reserved_type"
    #: An event whose fields are missing, of the wrong type, or unknown; the message says which.
    INVALID_EVENT = "invalid_event"
    #: A field over its limit (a token's text, a tool's result, the input …); the message says which.
    FIELD_TOO_LARGE = "field_too_large"
    #: A batch over the bytes or the events one request may carry.
    BATCH_TOO_LARGE = "batch_too_large"
    #: A batch that does not continue where the run's accepted events end: the answer's
    #: ``expected_n`` says which ``n`` must come next.
    GAP = "gap"
    #: A cancel or message to an external run whose agent did not declare it takes them.
    NOT_SUPPORTED = "not_supported"
    # -- the server's own fault
    INTERNAL = "internal"


#: The HTTP status each code answers with on REST.
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_JSON: 400,
    ErrorCode.NOT_AN_OBJECT: 400,
    ErrorCode.UNKNOWN_TYPE: 400,
    ErrorCode.BAD_MESSAGE: 400,
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.EMPTY_INPUT: 400,
    ErrorCode.INPUT_TOO_LARGE: 413,
    ErrorCode.HEADERS_TOO_LARGE: 431,
    ErrorCode.REQUEST_TIMEOUT: 408,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.HOST_NOT_ALLOWED: 400,
    ErrorCode.UNKNOWN_RUN: 404,
    ErrorCode.UNKNOWN_KEY: 404,
    ErrorCode.NOT_SUBSCRIBED: 404,
    ErrorCode.UNKNOWN_APPROVAL: 404,
    ErrorCode.UNKNOWN_THREAD: 404,
    ErrorCode.ALREADY_DECIDED: 409,
    ErrorCode.INVALID_ARGUMENTS: 422,
    ErrorCode.NOT_STARTED: 409,
    ErrorCode.THREAD_BUSY: 409,
    ErrorCode.UNKNOWN_AGENT: 422,
    ErrorCode.ALREADY_FINISHED: 409,
    ErrorCode.AFTER_BEYOND_HEAD: 400,
    ErrorCode.QUEUE_FULL: 429,
    ErrorCode.TOO_MANY_SUBSCRIPTIONS: 429,
    ErrorCode.TOO_MANY_CONNECTIONS: 429,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.SHUTTING_DOWN: 503,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.SERVER_BUSY: 503,
    ErrorCode.RESERVED_TYPE: 422,
    ErrorCode.INVALID_EVENT: 422,
    ErrorCode.FIELD_TOO_LARGE: 413,
    ErrorCode.BATCH_TOO_LARGE: 413,
    ErrorCode.GAP: 409,
    ErrorCode.NOT_SUPPORTED: 409,
    ErrorCode.INTERNAL: 500,
}


class CloseCode(enum.IntEnum):
    """WebSocket close codes. Clients reconnect (with their last seq) after every one not in ``FINAL``."""

    NORMAL = 1000
    #: The server is shutting down; reconnect (with your last seq) after a moment.
    GOING_AWAY = 1001
    #: A text frame that is not valid UTF-8 (uvicorn closes the socket itself). Terminal: fix the client.
    INVALID_DATA = 1007
    #: The client kept sending messages while rate limited (after a ``rate_limited`` error).
    POLICY_VIOLATION = 1008
    #: The client sent a frame over the size limit (``max_message_bytes`` in ``hello``). Terminal.
    MESSAGE_TOO_BIG = 1009
    #: A server bug; reconnect and resubscribe. uvicorn also closes with it (``keepalive ping
    #: timeout``) a client that answered no ping within the heartbeat: ``SlowConsumer.PING_TIMEOUT``.
    INTERNAL_ERROR = 1011
    #: Sent by uvicorn when it restarts: as 1001.
    SERVICE_RESTART = 1012
    #: Slow consumer (a frame was not taken within the send timeout) or a message flood. Reconnect.
    TRY_AGAIN_LATER = 1013
    #: No valid credential at the handshake, or the credential expired (or was revoked) while the
    #: socket was open. Terminal: log in again (or get a fresh token) before reconnecting.
    UNAUTHENTICATED = 4401
    #: The principal may not use the socket (or this origin). Terminal.
    FORBIDDEN = 4403


#: Close codes after which a client logs in again (or gets a fresh token) before reconnecting.
LOG_IN_AGAIN: frozenset[CloseCode] = frozenset({CloseCode.UNAUTHENTICATED, CloseCode.FORBIDDEN})
#: Close codes after which reconnecting as before cannot help (the others: reconnect, with the
#: last seq of each run, after a back-off).
FINAL: frozenset[CloseCode] = LOG_IN_AGAIN | {CloseCode.INVALID_DATA, CloseCode.MESSAGE_TOO_BIG}

#: Close code → the ``reason`` label of ``runwatch_ws_connections_closed_total``.
CLOSE_REASONS: dict[CloseCode, str] = {
    CloseCode.NORMAL: "client",
    CloseCode.GOING_AWAY: "server_shutdown",
    CloseCode.SERVICE_RESTART: "server_shutdown",
    CloseCode.TRY_AGAIN_LATER: "slow_consumer",
    CloseCode.MESSAGE_TOO_BIG: "message_too_big",
    CloseCode.INVALID_DATA: "invalid_data",
    CloseCode.POLICY_VIOLATION: "flood",
    CloseCode.INTERNAL_ERROR: "error",
    CloseCode.UNAUTHENTICATED: "unauthenticated",
    CloseCode.FORBIDDEN: "forbidden",
}


class ResyncReason(enum.StrEnum):
    """Why a subscription's live flow stopped and the client must subscribe again (``resync``)."""

    #: The client fell too far behind while the server was blocked on it.
    SLOW_CONSUMER = "slow_consumer"
    #: The log the client followed was lost or rebuilt: its positions mean something else now.
    EPOCH_CHANGED = "epoch_changed"
    #: The runs feed no longer holds the position asked for: reload the runs list.
    FEED_TRIMMED = "feed_trimmed"


class SlowConsumer(enum.StrEnum):
    """Why a watcher that does not keep up was cut off: the ``reason`` of the ``ws.slow_consumer``
    and ``sse.slow_consumer`` log lines. Each cut also counts in
    ``runwatch_ws_slow_consumers_total{action="disconnect"}`` (label ``transport``: ws, sse)."""

    #: A WebSocket frame or an SSE event was not taken within ``RUNWATCH_WS_SEND_TIMEOUT`` seconds:
    #: the client's TCP window stayed full. The WebSocket closes with 1013; the SSE stream's
    #: connection is dropped (an ``EventSource`` reconnects with ``Last-Event-ID``).
    SEND_TIMEOUT = "send_timeout"
    #: A WebSocket client answered no ping within ``RUNWATCH_HEARTBEAT`` seconds (it stopped
    #: reading, or is gone); uvicorn closes it with 1011 ``keepalive ping timeout``.
    PING_TIMEOUT = "ping_timeout"


class RunwatchError(Exception):
    """Base of every error a client can be told about; ``code`` says which."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]


class BadRequest(RunwatchError):
    code = ErrorCode.BAD_REQUEST


class EmptyInput(BadRequest):
    code = ErrorCode.EMPTY_INPUT


class InputTooLarge(BadRequest):
    code = ErrorCode.INPUT_TOO_LARGE


class Unauthenticated(RunwatchError):
    code = ErrorCode.UNAUTHENTICATED


class Forbidden(RunwatchError):
    code = ErrorCode.FORBIDDEN


class RateLimited(RunwatchError):
    """Over a limit; ``retry_after`` says in how many seconds the next attempt can succeed."""

    code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str, *, retry_after: float, kind: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.kind = kind


class UnknownRun(RunwatchError, LookupError):
    code = ErrorCode.UNKNOWN_RUN


class UnknownAgent(RunwatchError, LookupError):
    code = ErrorCode.UNKNOWN_AGENT


class RunAlreadyFinished(RunwatchError):
    code = ErrorCode.ALREADY_FINISHED

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id} already finished ({status})")
        self.status = status


class AfterBeyondHead(RunwatchError):
    code = ErrorCode.AFTER_BEYOND_HEAD


class TooManyConnections(RunwatchError):
    code = ErrorCode.TOO_MANY_CONNECTIONS


class QueueFull(RunwatchError):
    code = ErrorCode.QUEUE_FULL


class ShuttingDown(RunwatchError):
    code = ErrorCode.SHUTTING_DOWN


class Unavailable(RunwatchError):
    code = ErrorCode.UNAVAILABLE


class UnknownApproval(RunwatchError, LookupError):
    code = ErrorCode.UNKNOWN_APPROVAL

    @classmethod
    def of(cls, run_id: str, approval_id: str) -> UnknownApproval:
        return cls(f"run {run_id} has no open approval {approval_id!r}")


class UnknownThread(RunwatchError, LookupError):
    code = ErrorCode.UNKNOWN_THREAD


class AlreadyDecided(RunwatchError):
    code = ErrorCode.ALREADY_DECIDED


class InvalidArguments(RunwatchError):
    code = ErrorCode.INVALID_ARGUMENTS


class NotStarted(RunwatchError):
    code = ErrorCode.NOT_STARTED

    @classmethod
    def of(cls, run_id: str) -> NotStarted:
        return cls(f"run {run_id} has not started yet; send the message once it runs")


class ThreadBusy(RunwatchError):
    code = ErrorCode.THREAD_BUSY


# -- the ingest API -------------------------------------------------------------------------------


class ReservedType(RunwatchError):
    code = ErrorCode.RESERVED_TYPE


class InvalidEvent(RunwatchError):
    code = ErrorCode.INVALID_EVENT


class FieldTooLarge(RunwatchError):
    code = ErrorCode.FIELD_TOO_LARGE


class BatchTooLarge(RunwatchError):
    code = ErrorCode.BATCH_TOO_LARGE


class Gap(RunwatchError):
    """A batch that skips events: ``expected_n`` is the ``n`` the run's next event must have."""

    code = ErrorCode.GAP

    def __init__(self, message: str, *, expected_n: int) -> None:
        super().__init__(message)
        self.expected_n = expected_n


class NotSupported(RunwatchError):
    code = ErrorCode.NOT_SUPPORTED
