"""The values each metric label may take, fixed and derived where a union describes them: no
label takes run ids, user text or free-form errors, so every series can exist (at zero) from start."""

from __future__ import annotations

from typing import get_args, get_type_hints

from runwatch.agents import errors
from runwatch.agents.events import ApprovalDecision, FinalStatus, MessageReceived
from runwatch.api.ws.protocol import CLIENT_TYPES

RUN_STATUSES: tuple[str, ...] = get_args(FinalStatus)
APPROVAL_DECISIONS: tuple[str, ...] = get_args(ApprovalDecision)
MESSAGE_MODES: tuple[str, ...] = get_args(get_type_hints(MessageReceived)["mode"])
TOOL_OUTCOMES = ("ok", "error", "cancelled", "denied")
CLOSE_REASONS = tuple(dict.fromkeys(errors.CLOSE_REASONS.values()))
SLOW_CONSUMER_ACTIONS = ("resync", "disconnect")
#: The ``transport`` label of ``runwatch_ws_slow_consumers_total``: SSE streams are only ever cut.
SLOW_CONSUMER_TRANSPORTS = {"ws": SLOW_CONSUMER_ACTIONS, "sse": ("disconnect",)}
#: ``runwatch_ws_messages_received_total``'s ``type``: every client message, and what is not one.
CLIENT_MESSAGE_TYPES = (*CLIENT_TYPES, "invalid")
LLM_ERROR_TYPES = ("connection", "timeout", "rate_limited", "client_error", "server_error", "other")
TOKEN_TYPES = ("input", "output")
OTHER = "other"


#: The ``kind`` label of ``runwatch_rate_limited_total``: each limit that can refuse.
LIMIT_KINDS = (
    "runs_per_minute",
    "tenant_active",
    "ws_messages",
    "ws_connections",
    "sse_streams",
    "ws_subscriptions",
    "offline_model",
)
#: The ``reason`` label of ``runwatch_auth_failures_total``.
AUTH_FAILURE_REASONS = (
    "missing",
    "malformed",
    "bad_signature",
    "bad_algorithm",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "unknown_key",
    "revoked",
    "no_role",
    "no_tenant",
    "bad_session",
    "bad_ticket",
    "bad_code",
    "origin",
)
