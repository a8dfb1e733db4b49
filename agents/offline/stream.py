"""The offline model's replies as OpenAI ``chat.completion.chunk`` streams, paced at their rate, or
as one ``chat.completion`` object made in pieces.

``plan_reply`` (``offline_model.py``) decides what to say; ``stream_reply`` says it. A text answer's
chunks come from a ``TextStream``, made one at a time as they fall due, which the endpoint's pacer
(``api/offline/pacer.py``) may stream itself, many streams on one timer. ``complete_reply`` says it
as the answer to a request that does not stream: still made and sent a piece at a time, so a large
answer neither holds the event loop nor sits whole in memory.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

import msgspec

from runwatch.agents.offline.model import Reply, estimate_tokens

#: A stream keeps the bytes of this many distinct chunks (a scenario cycles through ``WORDS``), so a
#: repeated token costs a dict look-up instead of encoding and framing it again; only chunks of at
#: most ``CACHED_CHUNK_BYTES`` (a padded scenario's big chunks are made each time, as its tokens
#: are): at most 64 KiB per stream.
CACHED_CHUNKS = 64
CACHED_CHUNK_BYTES = 1024


class TextStream:
    """A text answer's chunks, made one at a time as they fall due: ``start + sent / rate``.

    ``take`` returns the next chunk's JSON (``chunk_tokens`` tokens), or, after ``frame(f)``, that
    JSON framed by ``f`` for its transport (``frame(None)``: plain JSON again); ``done`` says there
    is none left, known one chunk ahead, so the answer's end is sent with its last token, not one
    token interval later. Whoever streams it paces it: ``stream_reply`` with a sleep per chunk, or
    a pacer that serves many streams on one timer (``api/offline/pacer.py``).
    """

    __slots__ = (
        "_cache", "_frame", "_head", "_next", "_next_tokens", "_per_chunk", "_tail", "_tokens",
        "base", "rate", "sent", "start",
    )  # fmt: skip

    def __init__(self, tokens: Iterable[str], rate: float, per_chunk: int, head: bytes, tail: bytes) -> None:
        self._tokens = iter(tokens)
        self._per_chunk = per_chunk
        self._head = head
        self._tail = tail
        self._frame: Callable[[bytes], bytes] | None = None
        self._cache: dict[str, bytes] = {}
        self.rate = rate
        self.sent = 0
        self.start = time.monotonic()
        #: Where the chunks after the first are counted from (``align``); the first is due at ``start``.
        self.base = self.start
        self._next: str | None = None
        self._next_tokens = 0
        self._advance()

    @property
    def done(self) -> bool:
        return self._next is None

    def due_at(self) -> float:
        if self.rate <= 0:
            return 0.0
        return self.base + self.sent / self.rate if self.sent else self.start

    def align(self, grid: float) -> None:
        """Count the chunks after the first from the next multiple of ``grid`` on the monotonic
        clock (or of the chunk interval, if shorter), so that streams of one rate fall due together
        and share their wake-ups. The first chunk stays due at once; the pace is unchanged."""
        if self.rate > 0 and not self.sent:
            step = min(grid, 1 / self.rate)
            self.base = math.ceil(self.start / step) * step

    def frame(self, frame: Callable[[bytes], bytes] | None) -> None:
        """From now on ``take`` returns each chunk's JSON passed through ``frame`` (cached with it),
        or, with ``None``, the JSON itself."""
        self._frame = frame
        self._cache.clear()

    def _advance(self) -> None:
        if self._per_chunk == 1:
            self._next = next(self._tokens, None)
            self._next_tokens = 1
        else:
            piece = list(itertools.islice(self._tokens, self._per_chunk))
            self._next = "".join(piece) if piece else None
            self._next_tokens = len(piece)

    def take(self) -> bytes:
        """The next chunk; only while not ``done``."""
        text = self._next
        assert text is not None, "take() after the last chunk"
        self.sent += self._next_tokens
        self._advance()
        chunk = self._cache.get(text)
        if chunk is None:
            chunk = self._head + msgspec.json.encode(text) + self._tail
            if self._frame is not None:
                chunk = self._frame(chunk)
            if len(chunk) <= CACHED_CHUNK_BYTES and len(self._cache) < CACHED_CHUNKS:
                self._cache[text] = chunk
        return chunk


#: A non-streamed answer's text is made, encoded and sent in pieces of about this many characters,
#: the event loop free between them: some 50 µs of work each.
PIECE_CHARS = 64 * 1024


#: Streams a paced ``TextStream`` itself (and returns once it is done, or leaves what it could not).
Pace = Callable[[TextStream], Awaitable[None]]


async def stream_reply(
    reply: Reply, *, model: str, messages: list[dict[str, Any]], include_usage: bool, pace: Pace | None = None
) -> AsyncIterator[bytes]:
    """The reply as OpenAI ``chat.completion.chunk`` objects in JSON, paced at ``reply.rate`` tokens/s.

    A token's chunk is two constant byte strings around the token's JSON, so a full-speed stream
    costs little per token. ``pace``, when given, streams a paced text answer's tokens its own
    way; whatever it leaves is streamed here.
    """
    ident, created = _ident()
    encode = msgspec.json.encode
    head = encode({"id": ident, "object": "chat.completion.chunk", "created": created, "model": model})[:-1]
    head += b',"choices":[{"index":0,"delta":'

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return head + encode(delta) + b',"finish_reason":' + encode(finish) + b"}]}"

    yield chunk({"role": "assistant", "content": ""})
    if reply.tool_calls:
        calls = [(name, encode(args).decode()) for name, args in reply.tool_calls]
        for delta in _tool_call_deltas(calls, ident):
            yield chunk(delta)
        completion_tokens = sum(3 + len(arguments) // 4 for _, arguments in calls)
        finish = "tool_calls"
    else:
        if reply.delay > 0:
            await asyncio.sleep(reply.delay)
        text = TextStream(
            reply.tokens, reply.rate, reply.chunk_tokens, head + b'{"content":', b'},"finish_reason":null}]}'
        )
        if pace is not None and reply.rate > 0:
            await pace(text)
        while not text.done:
            if reply.rate > 0:
                delay = text.due_at() - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            yield text.take()
        completion_tokens = text.sent
        finish = "stop"
    yield chunk({}, finish)
    if include_usage:
        prompt_tokens = estimate_tokens(messages)
        yield encode(
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": _usage(prompt_tokens, completion_tokens),
            }
        )


def _tool_call_deltas(calls: list[tuple[str, str]], ident: str) -> Iterator[dict[str, Any]]:
    """The deltas of a reply's tool calls (name, arguments' JSON): each call's id and name, then
    its arguments in two halves."""
    for i, (name, arguments) in enumerate(calls):
        function = {"name": name, "arguments": ""}
        yield {"tool_calls": [{"index": i, "id": f"call_{ident[-8:]}_{i}", "type": "function", "function": function}]}
        half = len(arguments) // 2
        for part in (arguments[:half], arguments[half:]):
            yield {"tool_calls": [{"index": i, "function": {"arguments": part}}]}


def _ident() -> tuple[str, int]:
    """A completion's id and its ``created`` time."""
    return f"chatcmpl-offline-{time.time_ns():x}", int(time.time())


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


async def complete_reply(reply: Reply, *, model: str, messages: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    """The reply as one OpenAI ``chat.completion`` object in JSON, in pieces: its head at once, then
    its text ``PIECE_CHARS`` at a time, each when its last token falls due at ``reply.rate``
    (the loop is given a turn between pieces at any rate), then the end and its usage."""
    ident, created = _ident()
    encode = msgspec.json.encode
    head = encode({"id": ident, "object": "chat.completion", "created": created, "model": model})[:-1]
    prompt_tokens = estimate_tokens(messages)
    if reply.tool_calls:
        calls = [
            {
                "id": f"call_{ident[-8:]}_{i}",
                "type": "function",
                "function": {"name": n, "arguments": encode(a).decode()},
            }
            for i, (n, a) in enumerate(reply.tool_calls)
        ]
        message = {"role": "assistant", "content": None, "tool_calls": calls}
        used = sum(3 + len(c["function"]["arguments"]) // 4 for c in calls)
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
        yield head + b',"choices":[' + encode(choice) + b'],"usage":' + encode(_usage(prompt_tokens, used)) + b"}"
        return
    yield head + b',"choices":[{"index":0,"message":{"role":"assistant","content":'
    if reply.delay > 0:
        await asyncio.sleep(reply.delay)
    tokens = iter(reply.tokens)
    first = next(tokens, None)
    sent = 0
    if first is None:
        yield b"null"
    else:
        start = time.monotonic()
        piece, chars = [first], len(first)
        yield b'"'
        for token in itertools.chain(tokens, (None,)):
            if token is not None and chars < PIECE_CHARS:
                piece.append(token)
                chars += len(token)
                continue
            sent += len(piece)
            if reply.rate > 0 and (due := start + (sent - 1) / reply.rate - time.monotonic()) > 0:
                await asyncio.sleep(due)
            yield encode("".join(piece))[1:-1]
            await asyncio.sleep(0)  # a write to a socket with room returns at once: let others run
            if token is not None:
                piece, chars = [token], len(token)
        yield b'"'
    yield b'},"finish_reason":"stop"}],"usage":' + encode(_usage(prompt_tokens, sent)) + b"}"
