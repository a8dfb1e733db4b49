"""The agent loop: stream a chat completion, run the tools it asks for, feed results back, repeat.

Talks to any OpenAI-compatible endpoint through the official ``openai`` SDK, whose raw stream is
decoded by ``model_stream`` (the SDK's per-chunk models cost more than the rest of a run).
Cancellation is the asyncio kind: cancelling the run's task closes the HTTP stream to the model (``async with``
on the stream) or cancels running tool tasks (their cleanups run), and every started step or
tool call still gets its ``*.finished`` event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import openai
import structlog
from openai import AsyncOpenAI

from runwatch.agents import model_stream
from runwatch.agents.agent import Agent
from runwatch.agents.coalesce import TokenCoalescer, WindowClock
from runwatch.agents.control import RunControl
from runwatch.agents.events import Emit, StepFinished, StepStarted, Totals, Usage
from runwatch.agents.prices import PriceTable
from runwatch.agents.resume import Resumed
from runwatch.agents.tool_calls import Call, ToolCalls

log = structlog.get_logger()

#: How long one run may go on parsing stream chunks that are already buffered before it lets the
#: event loop run everything else (fan-out, coalescing timers, other runs), and waits until what it
#: published is visible (``settle``): a model streaming at full speed must not hold back the
#: delivery of what it has already said, nor run ahead of it.
TIME_SLICE = 0.002


class LimitExceeded(Exception):
    """A run went past one of its limits; the message says which and names the setting."""


class StepLimitReached(LimitExceeded):
    pass


class OutputTooLarge(LimitExceeded):
    pass


def _since(start: float, then: float | None) -> float | None:
    """Seconds from ``start`` to ``then`` (None: it never came)."""
    return None if then is None else then - start


def error_type(exc: BaseException) -> str:
    """A model call's failure as one of a few fixed kinds (metrics labels, the UI)."""
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited"
    if isinstance(exc, openai.APIStatusError):
        return "client_error" if exc.status_code < 500 else "server_error"
    return "other"


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


class _Text:
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


async def _next_turn(run_id: str) -> None:
    await asyncio.sleep(0)


class Runner:
    """Runs agents against one model endpoint; stateless between runs.

    ``max_output_bytes`` bounds one model step's streamed output (text and tool-call arguments,
    UTF-8): past it the stream is closed and the run fails with ``OutputTooLarge``.
    ``max_tool_result_bytes`` bounds a tool result's JSON: past it the model gets an error instead.
    ``None`` means no limit.
    """

    def __init__(
        self,
        client: AsyncOpenAI,
        emit: Emit,
        *,
        coalesce_window: float = 0.025,
        time_slice: float = TIME_SLICE,
        max_output_bytes: int | None = None,
        max_tool_result_bytes: int | None = None,
        redact: Callable[[str], str] = str,
        settle: Callable[[str], Awaitable[None]] | None = None,
        prices: PriceTable | None = None,
    ) -> None:
        self._client = client
        #: What each step costs (``StepFinished.cost``).
        self._prices = prices or PriceTable()
        self._emit = emit
        self._tools = ToolCalls(emit, max_tool_result_bytes=max_tool_result_bytes, redact=redact)
        #: Awaited between time slices: the bus's ``settled`` keeps a run streaming at full speed
        #: at most one slice ahead of its watchers; without a bus, one turn of the event loop.
        self._settle = settle or _next_turn
        self._window = coalesce_window
        #: Every run's token windows on one timer (made on first use, inside the event loop).
        self._clock: WindowClock | None = None
        self._slice = time_slice
        self._max_output = max_output_bytes

    async def run(
        self,
        run_id: str,
        agent: Agent,
        user_input: str,
        model: str,
        stats: Totals,
        resumed: Resumed | None = None,
        *,
        control: RunControl | None = None,
        prior: list[dict[str, Any]] | None = None,
    ) -> str:
        """Drive the run to the model's final answer and return that answer's text; ``stats``, the
        run's totals, are added to as it goes.

        With ``resumed`` (see ``agents.resume``), continue a run another instance began: its
        finished steps and tool calls are taken as they were, the rest runs (``stats`` are then
        ``resumed.totals``, which count them). ``prior``: the thread's earlier turns, between the
        instructions and this run's input. ``control``: the run's approvals and messages (without
        one, a tool call that needs approval is denied); for a resumed run, its ``restored`` holds
        ``resumed.approvals`` (the supervisor sets it as soon as the run executes here, so they can
        be decided before this reaches them).
        Messages are delivered at step boundaries; a run with messages waiting does not end.
        """
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": agent.instructions},
            *(prior or ()),
            {"role": "user", "content": user_input},
        ]
        first = 0
        if resumed is not None:
            messages += resumed.messages
            first = resumed.next_step
            if resumed.answer is not None and not resumed.pending and not (control and control.has_messages):
                return resumed.answer
            if resumed.pending:
                calls = [Call(c.id, c.name, c.arguments) for c in resumed.pending]
                messages += await self._tools.messages(run_id, agent, calls, stats, control)
        answer: str | None = None  # the last final answer, should a message ask for more with no step left
        for index in range(first, agent.max_steps):
            if control is not None and control.has_messages:
                messages += await control.deliver()
            text, calls, interrupted = await self._step(run_id, index, agent, model, messages, stats, control)
            if interrupted or not calls:
                answer = None if interrupted else text
                if answer is not None and not (control is not None and control.has_messages):
                    return answer
                if text:  # (an assistant turn with neither text nor tool calls is refused by the API)
                    messages.append({"role": "assistant", "content": text})
                continue
            messages.append(
                {
                    "role": "assistant",
                    "content": text or None,
                    "tool_calls": [
                        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                        for c in calls
                    ],
                }
            )
            messages += await self._tools.messages(run_id, agent, calls, stats, control)
        if answer is not None:
            # A message came with the final answer of the last step allowed: the answer stands.
            log.warning("messages.undelivered", run_id=run_id, max_steps=agent.max_steps)
            return answer
        raise StepLimitReached(f"reached the agent's max_steps ({agent.max_steps}) without a final answer")

    async def _step(
        self,
        run_id: str,
        index: int,
        agent: Agent,
        model: str,
        messages: list[dict[str, Any]],
        stats: Totals,
        control: RunControl | None = None,
    ) -> tuple[str, list[Call], bool]:
        """One model call: its text, its tool calls, and whether a message interrupted it (then
        the text is what was said so far and the calls are dropped)."""
        started = StepStarted(run_id=run_id, index=index, model=model)
        await self._emit(started)
        stats.steps += 1
        start = started.ts or time.time()  # the step's times are on the events' clock (StepFinished)
        first_output: float | None = None  # when the first delta (text or tool call) came
        text = _Text()
        size = 0
        limit = self._max_output
        calls: dict[int, Call] = {}
        usage = Usage()
        reported = False  # the model sent its usage (it does last, so a cut stream has none)
        chunks = 0
        finish_reason = "error"
        failure: str | None = None
        if self._clock is None and self._window > 0:
            self._clock = WindowClock(self._window)
        coalescer = TokenCoalescer(run_id, self._emit, self._window, clock=self._clock)
        kwargs: dict[str, Any] = {}
        if specs := agent.tool_specs():
            kwargs["tools"] = specs
        interrupted = False
        if control is not None:
            control.streaming = True  # a message may interrupt the model from here on
            if control.interrupt_waiting:  # (one came while this step was being announced)
                control.interrupt()
        try:
            request = self._client.chat.completions.with_streaming_response.create(
                model=model, messages=messages, stream=True, stream_options={"include_usage": True}, **kwargs
            )
            async with request as response:
                slice_ends = time.perf_counter() + self._slice
                async for batch in model_stream.chunks(response.http_response):
                    for chunk in batch:
                        if time.perf_counter() > slice_ends:
                            await self._settle(run_id)
                            slice_ends = time.perf_counter() + self._slice
                        if chunk.usage is not None:
                            reported = True
                            usage = Usage(
                                input_tokens=chunk.usage.prompt_tokens or 0,
                                output_tokens=chunk.usage.completion_tokens or 0,
                            )
                        for choice in chunk.choices or ():
                            delta = choice.delta or _NO_DELTA
                            if delta.content:
                                if first_output is None:
                                    first_output = time.time()
                                size += _utf8_size(delta.content)
                                if limit is not None and size > limit:
                                    raise self._output_too_large(index)
                                text.append(delta.content)
                                chunks += 1
                                await coalescer.add(delta.content)
                                if chunks == 1:  # the first token is shown at once: its event's ts is the TTFT's end
                                    await coalescer.flush()
                            for tc in delta.tool_calls or ():
                                if first_output is None:
                                    first_output = time.time()
                                call = calls.setdefault(tc.index or 0, Call())
                                if tc.id:
                                    call.id = tc.id
                                if tc.function is not None:
                                    name, arguments = tc.function.name or "", tc.function.arguments or ""
                                    size += _utf8_size(name) + _utf8_size(arguments)
                                    if limit is not None and size > limit:
                                        raise self._output_too_large(index)
                                    call.name += name
                                    call.arguments += arguments
                            if choice.finish_reason:
                                finish_reason = choice.finish_reason
            if control is not None:
                control.streaming = False
            await coalescer.flush()  # a publish that fails here fails the step, like any other
        except asyncio.CancelledError:
            if control is not None:
                control.streaming = False
                interrupted = control.interrupted()
            if not interrupted:
                finish_reason = "cancelled"
                raise
            finish_reason = "interrupted"
        except Exception as exc:
            failure = error_type(exc)
            raise
        finally:
            if control is not None:
                control.streaming = False
            try:
                await coalescer.flush()
            except Exception as exc:  # the step is already failing or cancelled: that stays its reason
                log.warning("tokens.flush_failed", run_id=run_id, error=repr(exc))
            if not reported:  # cut (cancelled, interrupted, failed), or an endpoint that sends no usage
                usage = Usage(output_tokens=chunks, estimated=True)
            cost = self._prices.cost(model, usage)
            stats.add_usage(usage, cost)
            await self._emit(
                StepFinished(
                    run_id=run_id,
                    index=index,
                    finish_reason=finish_reason,
                    usage=usage,
                    ttft=_since(start, coalescer.first_at or first_output),
                    duration=time.time() - start,
                    error_type=failure,
                    cost=cost,
                    tool_calls=0 if interrupted or failure or finish_reason == "cancelled" else len(calls),
                    streamed_text=chunks > 0,
                )
            )
        if interrupted:
            return str(text), [], True
        ordered = [calls[i] for i in sorted(calls)]
        for n, call in enumerate(ordered):
            call.id = call.id or f"call_{index}_{n}"
        return str(text), ordered, False

    def _output_too_large(self, index: int) -> OutputTooLarge:
        return OutputTooLarge(
            f"the model's output in step {index} passed the limit of {self._max_output} bytes "
            "(setting max_output_bytes, RUNWATCH_MAX_OUTPUT_BYTES)"
        )
