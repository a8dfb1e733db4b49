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

from runwatch.agents.events import Emit, StepFinished, StepStarted, Totals
from runwatch.agents.loop import model_stream
from runwatch.agents.loop.agent import Agent
from runwatch.agents.loop.coalesce import TokenCoalescer, WindowClock
from runwatch.agents.loop.prices import PriceTable
from runwatch.agents.loop.step import StepLimitReached, StepOutput
from runwatch.agents.loop.tool_calls import Call, ToolCalls, assistant_tool_calls
from runwatch.agents.runs.inbox import Inbox
from runwatch.agents.runs.resume import Resumed

log = structlog.get_logger()

#: How long one run may go on parsing stream chunks that are already buffered before it lets the
#: event loop run everything else (fan-out, coalescing timers, other runs), and waits until what it
#: published is visible (``settle``): a model streaming at full speed must not hold back the
#: delivery of what it has already said, nor run ahead of it.
TIME_SLICE = 0.002


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
        totals: Totals,
        resumed: Resumed | None = None,
        *,
        inbox: Inbox | None = None,
        prior: list[dict[str, Any]] | None = None,
    ) -> str:
        """Drive the run to the model's final answer and return that answer's text; the run's
        ``totals`` are added to as it goes.

        With ``resumed`` (see ``agents.resume``), continue a run another instance began: its
        finished steps and tool calls are taken as they were, the rest runs (``totals`` are then
        ``resumed.totals``, which count them). ``prior``: the thread's earlier turns, between the
        instructions and this run's input. ``inbox``: the run's approvals and messages (without
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
            if resumed.answer is not None and not resumed.pending and not (inbox and inbox.has_messages):
                return resumed.answer
            if resumed.pending:
                messages += await self._tools.messages(run_id, agent, resumed.pending, totals, inbox)
        return await self._steps(run_id, agent, model, messages, first, totals, inbox)

    async def _steps(
        self,
        run_id: str,
        agent: Agent,
        model: str,
        messages: list[dict[str, Any]],
        first: int,
        totals: Totals,
        inbox: Inbox | None,
    ) -> str:
        """Steps from ``first`` on, each after the messages waiting, each's tool calls made, until a
        final answer with no message waiting; ``StepLimitReached`` past the agent's ``max_steps``."""
        answer: str | None = None  # the last final answer, should a message ask for more with no step left
        for index in range(first, agent.max_steps):
            if inbox is not None and inbox.has_messages:
                messages += await inbox.deliver()
            text, calls, interrupted = await self._step(run_id, index, agent, model, messages, totals, inbox)
            if interrupted or not calls:
                answer = None if interrupted else text
                if answer is not None and not (inbox is not None and inbox.has_messages):
                    return answer
                if text:  # (an assistant turn with neither text nor tool calls is refused by the API)
                    messages.append({"role": "assistant", "content": text})
                continue
            messages.append({"role": "assistant", "content": text or None, "tool_calls": assistant_tool_calls(calls)})
            messages += await self._tools.messages(run_id, agent, calls, totals, inbox)
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
        totals: Totals,
        inbox: Inbox | None = None,
    ) -> tuple[str, list[Call], bool]:
        """One model call: its text, its tool calls, and whether a message interrupted it (then
        the text is what was said so far and the calls are dropped). Announced (``step.started``),
        and ended (``step.finished``) however it ends."""
        started = StepStarted(run_id=run_id, index=index, model=model)
        await self._emit(started)
        totals.steps += 1
        start = started.ts or time.time()  # the step's times are on the events' clock (StepFinished)
        out = StepOutput(index, self._max_output, self._coalescer(run_id))
        try:
            await self._stream_step(run_id, agent, model, messages, out, inbox)
        finally:
            await self._end_step(run_id, index, model, start, out, totals)
        return str(out.text), out.calls(), out.interrupted

    def _coalescer(self, run_id: str) -> TokenCoalescer:
        """A step's token coalescer, its windows on the shared clock."""
        if self._clock is None and self._window > 0:
            self._clock = WindowClock(self._window)
        return TokenCoalescer(run_id, self._emit, self._window, clock=self._clock)

    async def _stream_step(
        self,
        run_id: str,
        agent: Agent,
        model: str,
        messages: list[dict[str, Any]],
        out: StepOutput,
        inbox: Inbox | None,
    ) -> None:
        """Stream the model's answer into ``out``, interruptible by a message meanwhile, and record
        how it ended: an interrupt is taken back (the step ends ``interrupted``, the run goes on); a
        cancel or a failure is recorded, then raised."""
        if inbox is not None:
            inbox.streaming = True  # a message may interrupt the model from here on
            if inbox.interrupt_waiting:  # (one came while this step was being announced)
                inbox.interrupt()
        try:
            await self._stream(run_id, agent, model, messages, out)
            if inbox is not None:
                inbox.streaming = False
            await out.coalescer.flush()  # a publish that fails here fails the step, like any other
        except asyncio.CancelledError:
            if inbox is not None:
                inbox.streaming = False
                out.interrupted = inbox.interrupted()
            if not out.interrupted:
                out.finish_reason = "cancelled"
                raise
            out.finish_reason = "interrupted"
        except Exception as exc:
            out.failure = error_type(exc)
            raise
        finally:
            if inbox is not None:
                inbox.streaming = False

    async def _stream(
        self, run_id: str, agent: Agent, model: str, messages: list[dict[str, Any]], out: StepOutput
    ) -> None:
        """The model call: its chunks into ``out``, everything else let run (``settle``) after each
        time slice."""
        kwargs: dict[str, Any] = {}
        if specs := agent.tool_specs():
            kwargs["tools"] = specs
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
                    await out.add(chunk)

    async def _end_step(
        self, run_id: str, index: int, model: str, start: float, out: StepOutput, totals: Totals
    ) -> None:
        """However the step ended: its last tokens shown, its usage and cost counted in the run's
        totals, its ``step.finished`` published."""
        try:
            await out.coalescer.flush()
        except Exception as exc:  # the step is already failing or cancelled: that stays its reason
            log.warning("tokens.flush_failed", run_id=run_id, error=repr(exc))
        usage = out.counted_usage()
        cost = self._prices.cost(model, usage)
        totals.add_usage(usage, cost)
        await self._emit(
            StepFinished(
                run_id=run_id,
                index=index,
                finish_reason=out.finish_reason,
                usage=usage,
                ttft=_since(start, out.coalescer.first_at or out.first_output),
                duration=time.time() - start,
                error_type=out.failure,
                cost=cost,
                tool_calls=out.announced_calls(),
                streamed_text=out.chunks > 0,
            )
        )
