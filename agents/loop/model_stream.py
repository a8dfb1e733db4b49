"""A chat completion stream read raw: server-sent events in, small msgspec structs out.

The ``openai`` SDK stays the client (requests, retries, authentication, status errors), but its
per-chunk pydantic models cost more than everything else a run does per token. So the runner
asks it for the raw HTTP response (``with_streaming_response``) and decodes the event stream
here: one ``bytes.split`` per read and one msgspec decode per chunk, into structs that hold only
what the runner reads. Errors the stream reports are raised as the SDK raises them
(``openai.APIError``), so they are classified the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import openai

#: After ``[DONE]``, how long the rest of the body (the HTTP end of the stream) is read for, so the
#: connection goes back to the pool instead of being closed.
DRAIN_SECONDS = 0.5


def _transport_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """The exceptions a stream's reads raise for a timeout, and for any other failed read: the
    SDK's own lists, which it maps to ``APITimeoutError`` / ``APIConnectionError`` in its streams."""
    try:
        from openai._httpx2 import request_exceptions, timeout_exceptions
    except ImportError:  # an SDK on httpx
        import httpx

        return (httpx.TimeoutException,), (httpx.RequestError,)
    return timeout_exceptions(), request_exceptions()


_TIMEOUTS, _READ_ERRORS = _transport_errors()

#: The largest server-sent event the decoder holds while it waits for the event's end; a stream
#: that sends more without one is broken (or hostile) and is failed instead of buffered.
MAX_EVENT_BYTES = 16 * 1024 * 1024


# gc=False: these hold no cycles, and a stream makes thousands a second; the collector need not track them.


class FunctionDelta(msgspec.Struct, gc=False):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(msgspec.Struct, gc=False):
    index: int | None = 0
    id: str | None = None
    function: FunctionDelta | None = None


class Delta(msgspec.Struct, gc=False):
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class Choice(msgspec.Struct, gc=False):
    delta: Delta | None = None
    finish_reason: str | None = None
    index: int = 0


class ChunkUsage(msgspec.Struct, gc=False):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class Chunk(msgspec.Struct, gc=False):
    """One ``chat.completion.chunk``, as much of it as the runner reads; other fields are skipped."""

    choices: list[Choice] | None = None
    usage: ChunkUsage | None = None
    #: Set when the endpoint reports a failure inside the stream.
    error: Any = None


_decode_chunk = msgspec.json.Decoder(Chunk).decode


class SSEDecoder:
    """Server-sent events from bytes as they arrive, split across reads or many per read.

    ``feed`` returns the complete events' ``(event, data)`` pairs; ``event`` is ``None`` unless the
    stream named it. Lines may end in LF, CRLF or CR; comments and fields other than ``event`` and
    ``data`` are skipped; several ``data`` lines join with LF (the SSE specification).
    """

    __slots__ = ("_after_cr", "_buffer", "_limit")

    def __init__(self, limit: int = MAX_EVENT_BYTES) -> None:
        self._buffer = b""
        self._limit = limit
        #: The last read ended in CR, taken as a line end: an LF that starts the next is its pair.
        self._after_cr = False

    def feed(self, data: bytes) -> list[tuple[bytes | None, bytes]]:
        if self._after_cr and data.startswith(b"\n"):
            data = data[1:]
        self._after_cr = data.endswith(b"\r")
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return self._decode(self._buffer + data if self._buffer else data)

    def end(self) -> list[tuple[bytes | None, bytes]]:
        """The stream has ended; an event it did not end is dropped, as the SSE specification says."""
        return []

    def _decode(self, buffer: bytes) -> list[tuple[bytes | None, bytes]]:
        *blocks, rest = buffer.split(b"\n\n")
        if len(rest) > self._limit:
            raise ValueError(f"an event of the model's stream is over {self._limit} bytes without an end")
        self._buffer = rest
        events: list[tuple[bytes | None, bytes]] = []
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:
                events.append((None, block[6:]))  # the common case: one data line
                continue
            name: bytes | None = None
            lines: list[bytes] = []
            for line in block.split(b"\n"):
                if not line or line.startswith(b":"):
                    continue
                field, _, value = line.partition(b":")
                if value.startswith(b" "):
                    value = value[1:]
                if field == b"data":
                    lines.append(value)
                elif field == b"event":
                    name = value
            if lines:
                events.append((name, b"\n".join(lines)))
        return events


def _stream_error(data: bytes, request: Any) -> openai.APIError:
    """An error event in the stream, as the SDK's own stream raises it."""
    try:
        body = msgspec.json.decode(data)
    except msgspec.DecodeError:
        body = data.decode(errors="replace")
    error = body.get("error", body) if isinstance(body, dict) else body
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message:
        message = "An error occurred during streaming"
    return openai.APIError(message, request, body=error)


async def chunks(response: Any) -> AsyncIterator[list[Chunk]]:
    """The chunks of ``response`` (the SDK's ``httpx.Response``), a read's worth at a time, until
    ``[DONE]`` or the end of the body.

    Raises ``openai.APIError`` for an error the stream reports or a chunk that is not valid JSON.
    """
    decoder = SSEDecoder()
    request = response.request
    ended = False
    # Without a content encoding the body's bytes are the stream's: read them from the transport's
    # stream itself, without httpx's two generators (decoding, re-chunking) around every read.
    encoded = response.headers.get("content-encoding", "identity") != "identity"
    reads = aiter(response.aiter_bytes() if encoded else response.stream)
    done = False
    while not ended:
        try:
            data = await anext(reads, None)
        except _TIMEOUTS as exc:
            raise openai.APITimeoutError(request=request) from exc
        except _READ_ERRORS as exc:
            raise openai.APIConnectionError(request=request) from exc
        try:
            events = decoder.end() if data is None else decoder.feed(data)
        except ValueError as exc:
            raise openai.APIError(str(exc), request, body=None) from None
        ended = data is None
        batch: list[Chunk] = []
        failure: openai.APIError | None = None
        for name, payload in events:
            if payload.startswith(b"[DONE]"):
                ended = done = True
                break
            if name is not None and name != b"message":
                if name == b"error":
                    failure = _stream_error(payload, request)
                    break
                continue
            try:
                chunk = _decode_chunk(payload)
            except msgspec.DecodeError as exc:
                failure = openai.APIError(
                    f"the model's stream sent a chunk that is not a chat completion chunk: {exc}", request, body=None
                )
                break
            if chunk.error is not None:
                failure = _stream_error(payload, request)
                break
            batch.append(chunk)
        if batch:
            yield batch  # what came before a failure in the same read is the run's all the same
        if failure is not None:
            raise failure
    if done:
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                async for _ in reads:
                    pass
        except (TimeoutError, *_TIMEOUTS, *_READ_ERRORS):
            pass  # the connection is closed instead of reused: nothing lost
