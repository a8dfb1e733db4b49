"""``POST /v1/chat/completions``: the offline model, served over the OpenAI streaming protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec
from litestar import Request, post
from litestar.dto import DTOConfig, MsgspecDTO
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.response import Response, Stream

from runwatch.agents.errors import BadRequest, ErrorCode
from runwatch.agents.offline_model import plan_reply
from runwatch.agents.offline_stream import stream_reply
from runwatch.api.http_errors import error_responses
from runwatch.api.runtime import Runtime

#: At full speed, chunks are written in groups of this many SSE events per HTTP body write.
_GROUP = 16


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
    tags=["offline model"],
    summary="The offline model (OpenAI-compatible)",
    operation_class=_JSONOrEventStream,
    responses={
        200: ResponseSpec(
            dict[str, Any],
            description="One chat.completion (JSON), or chat.completion.chunk events (SSE) when stream is true",
            generate_examples=False,
        ),
        **error_responses(ErrorCode.BAD_JSON),
    },
)
async def chat_completions(data: ChatRequest, rt: Runtime, request: Request) -> Stream | Response:
    messages: list[dict[str, Any]] = msgspec.to_builtins(data.messages)
    tool_names = {t.function.name for t in data.tools}
    reply = plan_reply(messages, tool_names)
    include_usage = data.stream_options is not None and data.stream_options.include_usage
    chunks = stream_reply(
        reply,
        model=data.model,
        messages=messages,
        include_usage=include_usage or not data.stream,
        pace=partial(rt.pacer.stream, request.scope) if data.stream else None,
    )
    if not data.stream:
        return Response(await _complete(chunks), media_type="application/json")

    async def sse() -> AsyncIterator[bytes]:
        rt.offline_streams += 1
        try:
            group: list[bytes] = []
            async for chunk in chunks:
                group.append(b"data: " + chunk + b"\n\n")
                if reply.rate > 0 or len(group) >= _GROUP:
                    yield b"".join(group)
                    group.clear()
                    if reply.rate <= 0:
                        # A write to a socket with room returns at once: without this, a full-speed
                        # stream would keep the event loop (cancels, health, fan-out) until it fills.
                        await asyncio.sleep(0)
            group.append(b"data: [DONE]\n\n")
            yield b"".join(group)
        finally:
            rt.offline_streams -= 1

    return Stream(sse(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


async def _complete(chunks: AsyncIterator[bytes]) -> bytes:
    """Fold the chunks into one non-streaming ``chat.completion`` object."""
    text, calls, finish, usage, head = [], {}, "stop", None, {}
    async for encoded in chunks:
        chunk = msgspec.json.decode(encoded)
        head = head or chunk
        usage = chunk.get("usage") or usage
        for choice in chunk["choices"]:
            delta = choice["delta"]
            text.append(delta.get("content") or "")
            for tc in delta.get("tool_calls") or ():
                call = calls.setdefault(
                    tc["index"], {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                )
                call["id"] = tc.get("id") or call["id"]
                call["function"]["name"] += tc.get("function", {}).get("name") or ""
                call["function"]["arguments"] += tc.get("function", {}).get("arguments") or ""
            finish = choice["finish_reason"] or finish
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return msgspec.json.encode(
        {
            "id": head.get("id"),
            "object": "chat.completion",
            "created": head.get("created"),
            "model": head.get("model"),
            "usage": usage,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        }
    )
