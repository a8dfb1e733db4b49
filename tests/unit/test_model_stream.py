"""Reading the model's stream raw: the SSE decoder, and the runner against endpoints that split
chunks across reads, send many chunks per read, report errors inside the stream or send garbage.

The endpoints are real HTTP servers on loopback (a scripted raw socket server), spoken to by the
real openai SDK on both of its transports.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import msgspec
import openai
import pytest
from openai import AsyncOpenAI, DefaultAioHttpClient

from runwatch.agents.events import StepFinished, Token, ToolFinished, ToolStarted, Totals
from runwatch.agents.loop.agent import Agent
from runwatch.agents.loop.model_stream import SSEDecoder
from runwatch.agents.loop.runner import Runner

# -- the decoder -----------------------------------------------------------------------------------

STREAM = b'data: {"a":1}\n\n: a comment\n\nevent: ping\ndata: x\n\ndata: {"b":\ndata: 2}\n\ndata:[DONE]\n\n'
EXPECTED = [(None, b'{"a":1}'), (b"ping", b"x"), (None, b'{"b":\n2}'), (None, b"[DONE]")]


def _feed_all(parts: list[bytes]) -> list[tuple[bytes | None, bytes]]:
    decoder = SSEDecoder()
    return [event for part in parts for event in decoder.feed(part)] + decoder.end()


def test_events_split_at_any_byte_decode_the_same():
    for cut in range(1, len(STREAM)):
        assert _feed_all([STREAM[:cut], STREAM[cut:]]) == EXPECTED, f"cut at {cut}"


def test_events_one_byte_per_read_decode_the_same():
    assert _feed_all([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


@pytest.mark.parametrize("ending", [b"\r\n", b"\r"])
def test_crlf_and_cr_line_endings_decode_like_lf(ending: bytes):
    stream = STREAM.replace(b"\n", ending)
    assert _feed_all([stream]) == EXPECTED
    assert _feed_all([stream[i : i + 1] for i in range(len(stream))]) == EXPECTED


def test_an_event_without_an_end_past_the_limit_fails_instead_of_growing():
    decoder = SSEDecoder(limit=1024)
    decoder.feed(b"data: " + b"x" * 1000)
    with pytest.raises(ValueError, match="over 1024 bytes"):
        decoder.feed(b"x" * 100)


# -- the runner against scripted endpoints -----------------------------------------------------------


def _chunk(delta: dict | None = None, finish: str | None = None, **extra) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m", **extra}
    if delta is not None:
        body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _tool_call_then_text(step: int) -> bytes:
    """Step 0 asks for ``echo`` with its arguments in two deltas; step 1 answers in three tokens."""
    if step == 0:
        return b"".join(
            [
                _chunk({"role": "assistant", "content": ""}),
                _chunk(
                    {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "echo"}}]}
                ),
                _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"text": "he'}}]}),
                _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'llo"}'}}]}),
                _chunk({}, "tool_calls"),
                _chunk(choices=[], usage={"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}),
                b"data: [DONE]\n\n",
            ]
        )
    return b"".join(
        [
            _chunk({"content": "Héllo"}),
            _chunk({"content": ", "}),
            _chunk({"content": "world"}),
            _chunk({}, "stop"),
            _chunk(choices=[], usage={"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}),
            b"data: [DONE]\n\n",
        ]
    )


#: How a scripted endpoint writes its body: the whole of it at once, or one byte per TCP segment.
WRITES = {
    "many chunks per read": lambda body: [body],
    "chunks split across reads": lambda body: [body[i : i + 1] for i in range(len(body))],
}


@asynccontextmanager
async def scripted_endpoint(
    script: Callable[[int], bytes], writes: Callable[[bytes], list[bytes]], *, gzip: bool = False
) -> AsyncIterator[str]:
    """An OpenAI-compatible endpoint on loopback that answers request N with ``script(N)`` as SSE
    (gzip-encoded if asked: a proxy may compress an event stream)."""
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        body, served = script(served), served + 1
        encoding = b""
        if gzip:
            body, encoding = zlib.compress(body, wbits=31), b"content-encoding: gzip\r\n"
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n%sconnection: close\r\n\r\n" % encoding)
        for part in writes(body):
            writer.write(part)
            await writer.drain()
            if len(part) == 1:
                await asyncio.sleep(0)  # its own segment, so the client reads it on its own
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"


TRANSPORTS = {"aiohttp": DefaultAioHttpClient, "httpx": lambda: None}


async def _run(base_url: str, transport: str, agent: Agent) -> tuple[list, str | BaseException]:
    events: list = []

    async def emit(event):
        events.append(event)

    client = AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0, http_client=TRANSPORTS[transport]())
    try:
        answer = await Runner(client, emit, coalesce_window=0).run("r1", agent, "hi", "m", Totals())
    except Exception as exc:
        answer = exc
    finally:
        await client.close()
    return events, answer


def echo(text: str) -> str:
    """Say it back."""
    return text


@pytest.mark.parametrize("transport", list(TRANSPORTS))
@pytest.mark.parametrize("writes", list(WRITES))
async def test_text_tool_call_deltas_and_usage_come_through_however_the_stream_is_cut(transport, writes):
    async with scripted_endpoint(_tool_call_then_text, WRITES[writes]) as url:
        events, answer = await _run(url, transport, Agent(name="a", instructions=".", tools=[echo]))
    assert answer == "Héllo, world"
    started = next(e for e in events if isinstance(e, ToolStarted))
    assert (started.call_id, started.tool, started.arguments) == ("call_1", "echo", {"text": "hello"})
    assert next(e for e in events if isinstance(e, ToolFinished)).result == "hello"
    steps = [e for e in events if isinstance(e, StepFinished)]
    assert [s.finish_reason for s in steps] == ["tool_calls", "stop"]
    assert [(s.usage.input_tokens, s.usage.output_tokens) for s in steps] == [(7, 5), (20, 3)]
    assert all(s.ttft is not None and s.ttft <= s.duration for s in steps)
    assert [e.text for e in events if isinstance(e, Token)] == ["Héllo", ", ", "world"]


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_a_compressed_stream_is_decoded_before_it_is_read(transport):
    async with scripted_endpoint(_tool_call_then_text, WRITES["chunks split across reads"], gzip=True) as url:
        events, answer = await _run(url, transport, Agent(name="a", instructions=".", tools=[echo]))
    assert answer == "Héllo, world"
    assert [e.text for e in events if isinstance(e, Token)] == ["Héllo", ", ", "world"]


def _error_mid_stream(step: int) -> bytes:
    return (
        _chunk({"content": "partial"}) + b'data: {"error": {"message": "the model overloaded", "type": "server"}}\n\n'
    )


def _named_error_event(step: int) -> bytes:
    return _chunk({"content": "partial"}) + b'event: error\ndata: {"error": {"message": "quota gone"}}\n\n'


def _garbage(step: int) -> bytes:
    return _chunk({"content": "partial"}) + b"data: {not json\n\n"


@pytest.mark.parametrize("transport", list(TRANSPORTS))
@pytest.mark.parametrize(
    ("script", "message"),
    [
        (_error_mid_stream, "the model overloaded"),
        (_named_error_event, "quota gone"),
        (_garbage, "not a chat completion chunk"),
    ],
)
async def test_a_stream_that_reports_an_error_or_sends_garbage_fails_the_step(transport, script, message):
    async with scripted_endpoint(script, WRITES["many chunks per read"]) as url:
        events, answer = await _run(url, transport, Agent(name="a", instructions="."))
    assert isinstance(answer, openai.APIError)
    assert message in str(answer)
    step = next(e for e in events if isinstance(e, StepFinished))
    assert (step.finish_reason, step.error_type) == ("error", "other")
    assert [e.text for e in events if isinstance(e, Token)] == ["partial"]


async def test_a_status_error_is_raised_as_the_sdk_raises_it():
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = msgspec.json.encode({"error": {"message": "slow down", "type": "rate_limit"}})
        writer.write(
            b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        events, answer = await _run(url, "aiohttp", Agent(name="a", instructions="."))
    assert isinstance(answer, openai.RateLimitError)
    step = next(e for e in events if isinstance(e, StepFinished))
    assert step.error_type == "rate_limited"


@asynccontextmanager
async def keep_alive_endpoint(script: Callable[[int], bytes], *, cut: bool = False) -> AsyncIterator[tuple[str, list]]:
    """An endpoint that keeps connections alive: each answer is one chunk of chunked encoding, its
    end sent 2 ms later (as a server does once the stream's generator is done); ``cut`` aborts the
    connection instead of ending the first answer. Yields the URL and the list of connections made."""
    connections: list = []
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        connections.append(writer)
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = next(
                int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            body, served = script(served), served + 1
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(b"%x\r\n%s\r\n" % (len(body), body))
            await writer.drain()
            if cut:
                writer.transport.abort()
                return
            await asyncio.sleep(0.002)  # the body's end in a read of its own, a moment later, as a server sends it
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", connections


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_the_connection_is_reused_for_the_next_step_after_done(transport):
    async with keep_alive_endpoint(_tool_call_then_text) as (url, connections):
        _, answer = await _run(url, transport, Agent(name="a", instructions=".", tools=[echo]))
    assert answer == "Héllo, world"
    assert len(connections) == 1  # the body's end was read after [DONE], so the connection went back


def _partial(step: int) -> bytes:
    return _chunk({"content": "partial"})


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_a_connection_cut_mid_stream_is_a_connection_error(transport):
    async with keep_alive_endpoint(_partial, cut=True) as (url, _):
        events, answer = await _run(url, transport, Agent(name="a", instructions="."))
    assert isinstance(answer, openai.APIConnectionError)
    step = next(e for e in events if isinstance(e, StepFinished))
    assert (step.finish_reason, step.error_type) == ("error", "connection")
    assert [e.text for e in events if isinstance(e, Token)] == ["partial"]
