"""``POST /v1/chat/completions``: the offline model, served over the OpenAI streaming protocol.

Who may call it: any principal (any role), as the rest of the API authenticates them; this
process's own runs, with the key only they hold (``api/auth/web.py``); or anyone, with
``offline_model_open``. The request must be JSON, whoever sends it: a page on another site cannot
send that without a CORS preflight, which is refused.

What it may ask for: a scenario's answer is bounded (``check_scenario``: tokens, token size, chunk
size, and ``offline_max_answer_bytes`` of text), and all answers in flight together hold at most
``offline_max_inflight_bytes`` (``AnswerBudget``); an answer that does not stream is made and
sent a piece at a time (``complete_reply``).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec
from litestar import Request, post
from litestar.connection import ASGIConnection
from litestar.dto import DTOConfig, MsgspecDTO
from litestar.handlers import BaseRouteHandler
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.response import Response, Stream

from runwatch.agents.errors import BadRequest, ErrorCode, Forbidden, RateLimited, RunwatchError
from runwatch.agents.offline.model import plan_reply
from runwatch.agents.offline.stream import complete_reply, stream_reply
from runwatch.api.auth.web import check_csrf, principal_of
from runwatch.api.http_errors import ErrorBody, error_responses, runwatch_error
from runwatch.api.observability.metrics import Metrics
from runwatch.api.offline.serving import OfflineServing
from runwatch.api.settings.config import Settings

#: At full speed, chunks are written in groups of this many SSE events per HTTP body write ...
_GROUP = 16
#: ... or fewer, once the group holds this many bytes (a padded scenario's chunks are large).
_GROUP_BYTES = 256 * 1024


class OpenAIError(msgspec.Struct):
    message: str
    type: str
    code: str


class ModelErrorBody(ErrorBody):
    """A refusal of ``/v1``: runwatch's error body, and the same in OpenAI's shape (``error``), whose
    ``message`` OpenAI clients show: a run the offline model refuses fails saying why."""

    error: OpenAIError


_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def model_error(request: Request[Any, Any, Any], exc: RunwatchError) -> Response[ModelErrorBody]:
    response = runwatch_error(request, exc)
    kind = _OPENAI_TYPES.get(exc.http_status, "server_error" if exc.http_status >= 500 else "invalid_request_error")
    response.content = ModelErrorBody(
        status_code=exc.http_status,
        detail=exc.message,
        code=exc.code,
        error=OpenAIError(message=exc.message, type=kind, code=exc.code),
    )
    return response


async def may_call_offline_model(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """The guard of ``/v1``: a JSON request, from a principal (any role) unless the model is open."""
    content_type = connection.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        raise Forbidden("the offline model takes JSON only: send 'Content-Type: application/json'")
    state = connection.app.state
    if state.settings.offline_model.open:
        return
    principal = principal_of(connection, state.metrics)
    check_csrf(connection, state.settings, principal)


class FunctionCall(msgspec.Struct, omit_defaults=True):
    name: str
    arguments: str = ""


class ToolCall(msgspec.Struct, omit_defaults=True):
    id: str
    function: FunctionCall
    type: str = "function"


class ContentPart(msgspec.Struct, omit_defaults=True):
    type: str
    text: str = ""


class Message(msgspec.Struct, omit_defaults=True):
    """One conversation message, as much of it as the offline model reads; other fields are ignored."""

    role: str
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class FunctionDef(msgspec.Struct):
    name: str


class Tool(msgspec.Struct):
    function: FunctionDef
    type: str = "function"


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class ChatRequest(msgspec.Struct):
    """The part of an OpenAI chat completion request the offline model reads; a malformed one is a 400."""

    model: str
    messages: list[Message]
    stream: bool = False
    tools: list[Tool] = []
    stream_options: StreamOptions | None = None


class StrictChatRequest(MsgspecDTO[ChatRequest]):
    """Decode the body straight to a ``ChatRequest``, strictly: Litestar's own conversion is lenient
    (``0`` would pass for ``false``) and the offline model should refuse what OpenAI refuses."""

    config = DTOConfig(max_nested_depth=4)

    def decode_bytes(self, value: bytes) -> ChatRequest:
        try:
            return msgspec.json.decode(value, type=ChatRequest)
        except msgspec.ValidationError as exc:
            raise BadRequest(f"invalid chat completion request: {exc}") from None
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise BadRequest(f"the request body is not valid JSON: {exc}", code=ErrorCode.BAD_JSON) from None


@dataclass
class _JSONOrEventStream(Operation):
    """The operation's 200 is JSON or, when ``stream`` is true, an event stream: ``ResponseSpec`` names one type."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse) and ok.content is not None:
            data = Schema(type=OpenAPIType.OBJECT, properties={"data": Schema(type=OpenAPIType.STRING)})
            ok.content["text/event-stream"] = OpenAPIMediaType(schema=data)


@post(
    "/v1/chat/completions",
    status_code=200,
    dto=StrictChatRequest,
    return_dto=None,
    guards=[may_call_offline_model],
    exception_handlers={RunwatchError: model_error},
    tags=["offline model"],
    summary="The offline model (OpenAI-compatible)",
    operation_class=_JSONOrEventStream,
    responses={
        200: ResponseSpec(
            dict[str, Any],
            description="One chat.completion (JSON), or chat.completion.chunk events (SSE) when stream is true",
            generate_examples=False,
        ),
        **error_responses(
            ErrorCode.BAD_JSON,
            ErrorCode.UNAUTHENTICATED,
            ErrorCode.FORBIDDEN,
            ErrorCode.INPUT_TOO_LARGE,
            ErrorCode.RATE_LIMITED,
        ),
    },
)
async def chat_completions(
    data: ChatRequest, settings: Settings, offline: OfflineServing, metrics: Metrics, request: Request
) -> Stream:
    messages: list[dict[str, Any]] = msgspec.to_builtins(data.messages)
    tool_names = {t.function.name for t in data.tools}
    reply = plan_reply(messages, tool_names, max_answer_bytes=settings.offline_model.max_answer_bytes)
    try:
        release = offline.budget.reserve(reply.size)
    except RateLimited:
        metrics.limited("offline_model")
        raise
    if not data.stream:
        body = _releasing(complete_reply(reply, model=data.model, messages=messages), release)
        weakref.finalize(body, release)  # a response that never starts never runs the body's finally
        return Stream(body, media_type="application/json")
    include_usage = data.stream_options is not None and data.stream_options.include_usage
    chunks = stream_reply(
        reply,
        model=data.model,
        messages=messages,
        include_usage=include_usage,
        pace=partial(offline.pacer.stream, request.scope),
    )

    async def sse() -> AsyncIterator[bytes]:
        offline.streams += 1
        try:
            group: list[bytes] = []
            size = 0
            async for chunk in chunks:
                group.append(b"data: " + chunk + b"\n\n")
                size += len(chunk)
                if reply.rate > 0 or len(group) >= _GROUP or size >= _GROUP_BYTES:
                    yield b"".join(group)
                    group.clear()
                    size = 0
                    if reply.rate <= 0:
                        # A write to a socket with room returns at once: without this, a full-speed
                        # stream would keep the event loop (cancels, health, fan-out) until it fills.
                        await asyncio.sleep(0)
            group.append(b"data: [DONE]\n\n")
            yield b"".join(group)
        finally:
            offline.streams -= 1
            release()

    body = sse()
    weakref.finalize(body, release)  # a response that never starts never runs the body's finally
    return Stream(body, media_type="text/event-stream", headers={"cache-control": "no-cache"})


async def _releasing(pieces: AsyncIterator[bytes], release: Callable[[], None]) -> AsyncIterator[bytes]:
    """``pieces``, then ``release`` however the response ends (sent, cancelled, its client gone)."""
    try:
        async for piece in pieces:
            yield piece
    finally:
        release()
