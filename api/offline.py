"""``POST /v1/chat/completions``: the offline model, served over the OpenAI streaming protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, post
from litestar.exceptions import ClientException
from litestar.response import Response, Stream

from runwatch.agents.offline_model import plan_reply, stream_reply
from runwatch.api.runtime import Runtime

#: At full speed, chunks are written in groups of this many SSE events per HTTP body write.
_GROUP = 16


class ChatRequest(msgspec.Struct):
    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    tools: list[dict[str, Any]] = []
    stream_options: dict[str, Any] | None = None


@post("/v1/chat/completions", status_code=200, tags=["offline model"], summary="The offline model (OpenAI-compatible)")
async def chat_completions(request: Request, rt: Runtime) -> Stream | Response:
    try:
        body = msgspec.json.decode(await request.body(), type=ChatRequest)
    except msgspec.DecodeError as exc:
        raise ClientException(f"invalid chat completion request: {exc}") from None
    tool_names = {t.get("function", {}).get("name", "") for t in body.tools}
    reply = plan_reply(body.messages, tool_names)
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    chunks = stream_reply(
        reply, model=body.model, messages=body.messages, include_usage=include_usage or not body.stream
    )
    if not body.stream:
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
