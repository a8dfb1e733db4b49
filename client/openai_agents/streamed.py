"""``run_streamed``: ``Runner.run_streamed`` reported to runwatch, with the dashboard's controls.

``stream_events()`` yields the SDK's own stream events, unchanged, while it reports them: a step per
model response (from ``response.created`` to ``response.completed``, with its usage), every text
delta as a token, every tool call with its ``call_id``, arguments and output. One runwatch run spans
the whole of it, resumes included:

* **cancel** → ``result.cancel(cancel_mode)`` on the SDK's loop; the run ends ``cancelled``.
* **approvals** — a tool with ``needs_approval`` ends the SDK's stream with ``interruptions``: each
  becomes an ``approval.requested`` of the same run; approved (with the person's arguments, edited or
  not), denied or expired (``rejection_message``: the person's message), then the SDK's run resumes
  from its state and the same runwatch run goes on.
* **messages** — ``queue``: the next model call gets the text as a user message (through
  ``call_model_input_filter``, composed with the run config's own), and every later call keeps it
  where it came; ``interrupt``: the turn in progress finishes (``cancel("after_turn")``), then the
  run resumes with the text as new input.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import inspect
import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from runwatch.client.link import Cancelled
from runwatch.client.openai_agents import events
from runwatch.client.optional import framework
from runwatch.client.run import AsyncRun, ToolCall
from runwatch.client.runwatch import AsyncRunwatch
from runwatch.client.wire import Message

_sdk = framework("agents", "openai-agents", has="Runner")
from agents._tool_invocation import tool_invocation_identity  # noqa: E402  (the SDK, checked above)
from agents.run_config import CallModelData, ModelInputData  # noqa: E402

CancelMode = Literal["immediate", "after_turn"]
#: The most steering messages waiting for the model: a message past it pushes out the oldest one.
MAX_PENDING_MESSAGES = 256
_JSONABLE = (str, int, float, bool, type(None), dict, list)


def run_streamed(
    agent: Any,
    input: Any,
    *,
    rw: AsyncRunwatch,
    agent_name: str | None = None,
    cancel_mode: CancelMode = "immediate",
    **kwargs: Any,
) -> StreamedRun:
    """``Runner.run_streamed(agent, input, **kwargs)``, reported to runwatch through ``rw``: iterate
    ``stream_events()`` (the run starts there, as the SDK's starts with its first event); the
    dashboard can cancel it, decide its tools' approvals and send it messages. ``agent_name``: its
    runwatch agent name (else the agent's name, made one); ``cancel_mode``: what a cancel does
    (``"after_turn"``: finish the turn in progress first)."""
    return StreamedRun(agent, input, rw, agent_name, cancel_mode, kwargs)


def _text_of(input: Any) -> str:
    """What a run was asked, for runwatch: the text, or the last user message of a list."""
    if isinstance(input, str):
        return input
    if isinstance(input, list):
        for item in reversed(input):
            if isinstance(item, dict) and item.get("role") == "user":
                content = item.get("content")
                if isinstance(content, str):
                    return content
                return " ".join(p.get("text", "") for p in content or () if isinstance(p, dict))
    return ""


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, _JSONABLE) else str(value)


class StreamedRun:
    """One ``run_streamed`` call: ``stream_events()`` once; then ``final_output``, ``result`` (the
    SDK's last ``RunResultStreaming``) and ``run_id`` (the run's id in runwatch)."""

    def __init__(
        self,
        agent: Any,
        input: Any,
        rw: AsyncRunwatch,
        agent_name: str | None,
        cancel_mode: CancelMode,
        kwargs: dict[str, Any],
    ) -> None:
        self._agent, self._input, self._rw, self._cancel_mode = agent, input, rw, cancel_mode
        self._name = events.agent_name(agent_name or getattr(agent, "name", None))
        config = kwargs.pop("run_config", None) or _sdk.RunConfig()
        if isinstance(config, dict):
            config = _sdk.RunConfig(**config)
        self._trace_id: str = config.trace_id or _sdk.gen_trace_id()
        self._user_filter = config.call_model_input_filter
        self._config = dataclasses.replace(config, trace_id=self._trace_id, call_model_input_filter=self._filter)
        self._kwargs = kwargs
        #: Whether the model's server keeps the conversation (``previous_response_id`` and the like):
        #: a queued message then goes to one model call only, the server keeps it from there.
        kept_by_server = ("previous_response_id", "conversation_id", "auto_previous_response_id")
        self._server_side = any(kwargs.get(k) for k in kept_by_server)
        #: The SDK's result being streamed now (the last one, once done).
        self.result: Any = None
        self.run_id: str | None = None
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._run: AsyncRun | None = None
        self._queued: collections.deque[str] = collections.deque(maxlen=MAX_PENDING_MESSAGES)
        self._interrupts: collections.deque[str] = collections.deque(maxlen=MAX_PENDING_MESSAGES)
        #: Queued messages the model got, and where in its input: every later call gets them there too.
        self._delivered: list[tuple[int, dict[str, str]]] = []
        self._tools: dict[str, ToolCall] = {}
        self._denied: set[str] = set()
        self._step_open = False
        #: When the open step began, and when its first text came (``time.monotonic``).
        self._step_at: float = 0.0
        self._first_at: float | None = None

    @property
    def final_output(self) -> Any:
        return None if self.result is None else self.result.final_output

    @property
    def pending_messages(self) -> int:
        """Steering messages that reached the run and wait for the model's next call (or the next turn)."""
        return len(self._queued) + len(self._interrupts)

    async def stream_events(self) -> AsyncIterator[Any]:
        """The SDK's stream events, unchanged, across every resume; reported as they pass."""
        if self._started:
            raise RuntimeError("stream_events() runs the agent: iterate it once")
        self._started = True
        self._loop = asyncio.get_running_loop()
        text = _text_of(self._input).strip() or self._name
        run = self._rw.run(agent=self._name, input=text, capabilities=("cancel", "approve", "message"))
        await run.__aenter__()
        self._run, self.run_id = run, run.id
        events.OWNED.add(self._trace_id)
        error: BaseException | None = None
        try:
            run.on_cancel(self._cancel_soon)
            run.on_message(self._message_soon)
            next_input = self._input
            while next_input is not None:
                self.result = result = _sdk.Runner.run_streamed(
                    self._agent, next_input, run_config=self._config, **self._kwargs
                )
                if run.cancelled.is_set():
                    result.cancel(self._cancel_mode)
                elif self._interrupts:  # an interrupt that came while no turn ran (a person deciding)
                    result.cancel("after_turn")
                token = run.token
                async for event in result.stream_events():
                    if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
                        token(event.data.delta)  # the per-token path: the client's run.token, and a check
                        if self._first_at is None:
                            self._first_at = time.monotonic()
                    else:
                        self._report(run, event)
                    yield event
                next_input = await self._next(run, result)
        except Cancelled as e:  # cancelled while waiting for a person: the run ends cancelled
            error = e
        except (GeneratorExit, asyncio.CancelledError) as e:  # the caller gave up: stop the SDK's run too
            error = Cancelled()
            if self.result is not None:
                self.result.cancel("immediate")
            raise e
        except BaseException as e:
            error = e
            raise
        finally:
            events.OWNED.discard(self._trace_id)
            self._close_open(run)
            await run.__aexit__(type(error) if error else None, error, None)

    # -- reporting: what passes through the stream

    def _report(self, run: AsyncRun, event: Any) -> None:
        if event.type == "raw_response_event":
            data = event.data
            kind = data.type
            if kind == "response.created":
                run.step(getattr(data.response, "model", None) or "unknown")
                self._step_open = True
                self._step_at, self._first_at = time.monotonic(), None
            elif kind == "response.completed":
                response = data.response
                calls = sum(1 for item in response.output if item.type == "function_call")
                timing = {"duration": time.monotonic() - self._step_at, "streamed_text": self._first_at is not None}
                if self._first_at is not None:
                    timing["ttft"] = self._first_at - self._step_at
                reason = "tool_calls" if calls else "stop"
                run.step_done(events.usage(response.usage), reason, tool_calls=calls, **timing)
                self._step_open = False
        elif event.type == "run_item_stream_event":
            if event.name == "tool_called":
                raw = event.item.raw_item
                call_id = getattr(raw, "call_id", None)
                if call_id:
                    arguments = events.arguments(getattr(raw, "arguments", None))
                    self._tools[call_id] = run.tool(call_id, getattr(raw, "name", "tool"), arguments)
            elif event.name == "tool_output":
                raw = event.item.raw_item
                call_id = raw.get("call_id") if isinstance(raw, dict) else getattr(raw, "call_id", None)
                tool = self._tools.pop(call_id, None)
                if tool is not None:
                    self._finish_tool(run, tool, _jsonable(event.item.output))

    def _finish_tool(self, run: AsyncRun, tool: ToolCall, result: Any) -> None:
        if tool.call_id in self._denied:  # never called: the model got the denial's message
            self._denied.discard(tool.call_id)
            tool.deny()
        tool.result(result)
        tool.__exit__(None, None, None)

    def _close_step(self, run: AsyncRun) -> None:
        """End the step a cut stream left open."""
        if self._step_open:
            run.step_done(None, "cancelled" if run.cancelled.is_set() else "error")
            self._step_open = False

    def _close_open(self, run: AsyncRun) -> None:
        """End what the run leaves open: its step, its tool calls (a cancel cut them)."""
        self._close_step(run)
        for tool in self._tools.values():
            tool.__exit__(None, None, None)
        self._tools.clear()

    # -- between the SDK's runs: approvals, interrupts

    async def _next(self, run: AsyncRun, result: Any) -> Any:
        """What to resume the SDK's run with (``None``: it is done)."""
        self._close_step(run)
        if run.cancelled.is_set():
            return None
        if result.interruptions:
            state = result.to_state()
            for item in result.interruptions:
                await self._decide(run, state, item)
            return state
        texts = [*self._interrupts, *self._queued]
        self._interrupts.clear()
        self._queued.clear()
        if not texts:
            return None
        state = result.to_state()
        try:
            for text in texts:
                state.add_input(text)
            return state
        except _sdk.UserError:  # the run had ended (a final answer): go on from its conversation
            return [*result.to_input_list(), *({"role": "user", "content": t} for t in texts)]

    async def _decide(self, run: AsyncRun, state: Any, item: Any) -> None:
        """Ask a person about one interruption and apply the decision to ``state``."""
        raw = item.raw_item
        call_id = getattr(raw, "call_id", None) or (raw.get("call_id") if isinstance(raw, dict) else None) or ""
        name = item.tool_name or getattr(raw, "name", None) or "tool"
        arguments = events.arguments(getattr(raw, "arguments", None))
        tools = getattr(item.agent, "tools", ())
        schema = next((getattr(t, "params_json_schema", None) for t in tools if getattr(t, "name", None) == name), None)
        decision = await run.request_approval(call_id, name, arguments, f"{name} needs approval", schema)
        if decision.approved:
            if decision.arguments is not None and decision.arguments != arguments:
                _edit_arguments(state, item, call_id, decision.arguments)
            state.approve(item)
        else:
            self._denied.add(call_id)
            state.reject(item, rejection_message=decision.message)

    # -- the SDK's model input: queued messages

    async def _filter(self, data: Any) -> Any:
        """``call_model_input_filter``: the messages the model got before, where it got them, and the
        ones queued since, at the end; then the run config's own filter, if any."""
        if self._run is not None:
            self._run.messages()  # taken through on_message: keep the client's copy from growing
        model_data = data.model_data
        items = list(model_data.input)
        for at, message in self._delivered:
            items.insert(min(at, len(items)), message)
        while self._queued:
            message = {"role": "user", "content": self._queued.popleft()}
            if not self._server_side:
                self._delivered.append((len(items), message))
            items.append(message)
        filtered = ModelInputData(input=items, instructions=model_data.instructions)
        if self._user_filter is None:
            return filtered
        got = self._user_filter(CallModelData(model_data=filtered, agent=data.agent, context=data.context))
        return await got if inspect.isawaitable(got) else got

    # -- from the client's thread

    def _cancel_soon(self) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._cancel_now)

    def _cancel_now(self) -> None:
        if self.result is not None:
            self.result.cancel(self._cancel_mode)

    def _message_soon(self, message: Message) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._message_now, message)

    def _message_now(self, message: Message) -> None:
        if message.mode == "interrupt":
            self._interrupts.append(message.text)
            if self.result is not None:
                self.result.cancel("after_turn")
        else:
            self._queued.append(message.text)


def _edit_arguments(state: Any, item: Any, call_id: str, arguments: Any) -> None:
    """Make the approved call run with ``arguments``: the SDK runs the function call of the state's
    last processed response, bound to its arguments' fingerprint — replace the arguments (the
    conversation shows the edited call too) and rebind it before it runs."""
    processed = state._last_processed_response
    for planned in getattr(processed, "functions", ()):
        call = planned.tool_call
        if getattr(call, "call_id", None) == call_id:
            before = tool_invocation_identity(call, tool_lookup_key=item.tool_lookup_key)
            call.arguments = json.dumps(arguments)
            if before is not None:
                state._context._rebind_tool_invocation(
                    call, previous_identity=before, tool_lookup_key=item.tool_lookup_key
                )
            return
    raise RuntimeError(f"the approved call {call_id!r} is not in the run's state: its edited arguments cannot apply")
