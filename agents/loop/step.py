"""One model call's output as it streams: its text, tool calls and usage, bounded in bytes.

``StepOutput`` is fed each chunk of the stream (``add``) and says, when the call has ended, what
``step.finished`` reports (usage, counted or estimated; the tool calls announced) and which tool
calls to make. Past ``max_output_bytes`` it raises ``OutputTooLarge``, a ``LimitExceeded``.
"""

from __future__ import annotations

import time

from runwatch.agents.events import Usage
from runwatch.agents.loop import model_stream
from runwatch.agents.loop.coalesce import TokenCoalescer
from runwatch.agents.loop.tool_calls import Call


class LimitExceeded(Exception):
    """A run went past one of its limits; the message says which and names the setting."""


class StepLimitReached(LimitExceeded):
    pass


class OutputTooLarge(LimitExceeded):
    pass


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


class Text:
    """A step's streamed text: small parts joined into larger pieces as they come, so a long answer
    of short tokens does not hold one string object per token."""

    __slots__ = ("_parts", "_pieces")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._pieces: list[str] = []

    def append(self, text: str) -> None:
        self._parts.append(text)
        if len(self._parts) >= 1024:
            self._pieces.append("".join(self._parts))
            self._parts.clear()

    def __str__(self) -> str:
        return "".join(self._pieces) + "".join(self._parts)


_NO_DELTA = model_stream.Delta()


def _output_too_large(index: int, limit: int) -> OutputTooLarge:
    return OutputTooLarge(
        f"the model's output in step {index} passed the limit of {limit} bytes "
        "(setting max_output_bytes, RUNWATCH_MAX_OUTPUT_BYTES)"
    )


class StepOutput:
    """What one model call says as it streams, and how the call ended: its text (shown through
    ``coalescer``), tool calls and usage, its output bounded to ``limit`` bytes (``OutputTooLarge``)."""

    __slots__ = (
        "_calls",
        "_index",
        "_limit",
        "_size",
        "chunks",
        "coalescer",
        "failure",
        "finish_reason",
        "first_output",
        "interrupted",
        "reported",
        "text",
        "usage",
    )

    def __init__(self, index: int, limit: int | None, coalescer: TokenCoalescer) -> None:
        self._index = index
        self._limit = limit
        self.coalescer = coalescer
        self.text = Text()
        self._size = 0
        self._calls: dict[int, Call] = {}
        self.usage = Usage()
        #: The model sent its usage (it does last, so a cut stream has none).
        self.reported = False
        #: Text deltas that came.
        self.chunks = 0
        #: When the first delta (text or tool call) came.
        self.first_output: float | None = None
        self.finish_reason = "error"
        #: How the call failed (``error_type``), if it did.
        self.failure: str | None = None
        #: A person's message cut the stream: the step ends with what was said so far, its calls dropped.
        self.interrupted = False

    async def add(self, chunk: model_stream.Chunk) -> None:
        """One chunk of the stream: its usage, text and tool-call deltas, finish reason."""
        if chunk.usage is not None:
            self.reported = True
            self.usage = Usage(
                input_tokens=chunk.usage.prompt_tokens or 0,
                output_tokens=chunk.usage.completion_tokens or 0,
            )
        for choice in chunk.choices or ():
            delta = choice.delta or _NO_DELTA
            if content := delta.content:  # (text inline: this runs for every token)
                if self.first_output is None:
                    self.first_output = time.time()
                self._grow(_utf8_size(content))
                self.text.append(content)
                self.chunks += 1
                await self.coalescer.add(content)
                if self.chunks == 1:  # the first token is shown at once: its event's ts is the TTFT's end
                    await self.coalescer.flush()
            for tc in delta.tool_calls or ():
                self._add_tool_call(tc)
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason

    def _add_tool_call(self, tc: model_stream.ToolCallDelta) -> None:
        if self.first_output is None:
            self.first_output = time.time()
        call = self._calls.setdefault(tc.index or 0, Call())
        if tc.id:
            call.id = tc.id
        if tc.function is not None:
            name, arguments = tc.function.name or "", tc.function.arguments or ""
            self._grow(_utf8_size(name) + _utf8_size(arguments))
            call.name += name
            call.arguments += arguments

    def _grow(self, size: int) -> None:
        """``size`` more bytes of output: past the limit, the step fails."""
        self._size += size
        if self._limit is not None and self._size > self._limit:
            raise _output_too_large(self._index, self._limit)

    def counted_usage(self) -> Usage:
        """The usage the model reported, or, if it sent none (the stream was cut — cancelled,
        interrupted, failed — or the endpoint sends none), an estimate: a token per text delta."""
        return self.usage if self.reported else Usage(output_tokens=self.chunks, estimated=True)

    def announced_calls(self) -> int:
        """The tool calls ``step.finished`` says the step asked for: none if it was cut or failed."""
        if self.interrupted or self.failure or self.finish_reason == "cancelled":
            return 0
        return len(self._calls)

    def calls(self) -> list[Call]:
        """The tool calls to make, in the model's order, each with an id (none if interrupted)."""
        if self.interrupted:
            return []
        ordered = [self._calls[i] for i in sorted(self._calls)]
        for n, call in enumerate(ordered):
            call.id = call.id or f"call_{self._index}_{n}"
        return ordered
