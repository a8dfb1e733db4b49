"""``RunwatchCallbackHandler``: what a LangChain or LangGraph run does, reported into a runwatch run.

Pass it in the config's callbacks and every model call, streamed token, usage and tool call inside
goes to the run the caller opened::

    async with rw.run(agent="my-agent", input=question) as run:
        await agent.ainvoke(inputs, config={"callbacks": [RunwatchCallbackHandler(run)]})

What maps to what (docs/frameworks/langchain.md has the table): a chat model (or LLM) call is a
step (``step.started`` with the model's name, ``step.finished`` with its usage, finish reason,
``ttft``, ``duration`` and how many tool calls it asked for); each ``on_llm_new_token`` is a
``token``; a call that streamed nothing sends its answer as one token when it ends; tools are
``tool.started`` / ``tool.finished`` (with the error, if one raised), keyed by the model's tool call
id when LangChain knows it, else by LangChain's run id; a LangGraph node starting is a ``status``.

**Never raises into LangChain.** Every method reports its own errors to the client's ``errors``
(``rw.errors``) and returns. **Cheap per token.** The handler's methods are plain functions, run
inline (``run_inline``): LangChain calls them directly on both its sync and async paths — an
``AsyncCallbackHandler`` would cost a coroutine per token on the async path, and on the sync path
(which LangChain's async streaming falls back to for models without ``_astream``) a new event
loop per token. A token costs a dict lookup, a list append and ``run.token``. Safe from any thread.

**Bounded.** It holds one small record per model call and tool call in progress (dropped when it
ends: as many as LangChain runs at once); a model call's record keeps its text so far (what
:meth:`cut` returns), as long as its answer, which the model's output limit bounds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import msgspec

from runwatch.client.link import Cancelled
from runwatch.client.openai_chat import error_type
from runwatch.client.optional import framework

framework("langchain_core", "langchain", has="__version__")

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import LLMResult

    from runwatch.client.run import RunBase, ToolCall

T = TypeVar("T")


class _Step:
    """A model call in progress: its step index, its parent run (the node or chain that called it),
    when it began, when its first token came, and its text so far (what a cut keeps)."""

    __slots__ = ("first", "index", "parent", "parts", "started")

    def __init__(self, index: int, parent: UUID | None) -> None:
        self.index = index
        self.parent = parent
        self.started = time.monotonic()
        self.first: float | None = None
        self.parts: list[str] = []


class RunwatchCallbackHandler(BaseCallbackHandler):
    """Reports a LangChain / LangGraph run into ``run`` (a ``Run`` or ``AsyncRun`` the caller opened,
    or :func:`watch_graph` opened). Keyed by LangChain's run ids, so concurrent model and tool calls
    of one run are each reported whole (their tokens interleave, as they came)."""

    raise_error = False
    run_inline = True

    def __init__(self, run: RunBase) -> None:
        self.run = run
        self._steps: dict[UUID, _Step] = {}
        self._tools: dict[UUID, ToolCall] = {}
        #: Tool calls an interrupt paused (LangGraph runs them again on the resume), by call id.
        self._paused: dict[str, ToolCall] = {}
        #: The model call the last token was of (and its id): a token of the same call, as nearly
        #: all are, needs no lookup (a UUID's hash is computed in Python).
        self._hot: tuple[UUID | None, _Step | None] = (None, None)

    def _report(self, error: Exception) -> None:
        self.run.report(error)

    # -- model calls

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(run_id, parent_run_id, serialized, metadata, kwargs)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(run_id, parent_run_id, serialized, metadata, kwargs)

    def _start(
        self,
        run_id: UUID,
        parent: UUID | None,
        serialized: Any,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:
        try:
            self._steps[run_id] = _Step(self.run.step(_model_name(serialized, metadata, kwargs)), parent)
            self._hot = (None, None)
        except Exception as e:
            self._report(e)

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            if type(token) is not str:  # a list of content blocks: their text
                token = "".join(b if isinstance(b, str) else str(b.get("text") or "") for b in token or ())
            if not token:
                return
            hot_id, step = self._hot
            if run_id is not hot_id:
                step = self._steps.get(run_id)
                self._hot = (run_id, step)
            if step is not None:
                if step.first is None:
                    step.first = time.monotonic()
                step.parts.append(token)
            self.run.token(token)
        except Exception as e:
            self._report(e)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            step = self._steps.pop(run_id, None)
            self._hot = (None, None)
            if step is None:
                return
            generation = response.generations[0][0] if response.generations and response.generations[0] else None
            message = getattr(generation, "message", None)
            calls = len(getattr(message, "tool_calls", None) or ())
            if step.first is None and generation is not None and generation.text:
                step.first = time.monotonic()
                self.run.token(generation.text)  # it did not stream: its answer at once
            reason = _finish_reason(generation, message, calls)
            self._finish(step, _usage(message, response), reason, tool_calls=calls)
        except Exception as e:
            self._report(e)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            step = self._steps.pop(run_id, None)
            self._hot = (None, None)
            if step is None:
                return
            if type(error).__name__ == "CancelledError":
                self._finish(step, None, "cancelled")
            else:
                self._finish(step, None, "error", error_type=error_type(error))
        except Exception as e:
            self._report(e)

    def _finish(self, step: _Step, usage: dict[str, Any] | None, reason: str, **fields: Any) -> None:
        now = time.monotonic()
        timing = {"duration": now - step.started, "streamed_text": step.first is not None}
        if step.first is not None:
            timing["ttft"] = step.first - step.started
        self.run.step_done(usage, reason, index=step.index, **timing, **fields)

    def end_open(self, finish_reason: str = "cancelled") -> None:
        """Finish every model call and tool still open, as ``finish_reason`` (LangChain reports no
        end for a call whose task was cancelled: ``watch_graph`` calls this on a cancel)."""
        try:
            for step in [self._steps.pop(k) for k in list(self._steps)]:
                self._finish(step, None, finish_reason)
        except Exception as e:
            self._report(e)
        for run_id in list(self._tools):
            self._tool_done(run_id, None, finish_reason)
        paused, self._paused = self._paused, {}
        for tool in paused.values():
            tool.end(finish_reason)

    def cut(self, parent: UUID | None) -> str:
        """End the model calls ``parent`` made that are still open as ``interrupted`` (a steering
        message cut them); the text they streamed so far."""
        said: list[str] = []
        try:
            for run_id in [k for k, step in self._steps.items() if step.parent == parent]:
                step = self._steps.pop(run_id)
                said.extend(step.parts)
                self._finish(step, None, "interrupted")
        except Exception as e:
            self._report(e)
        return "".join(said)

    async def cancellable(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` (``chain.ainvoke(...)``, ``agent.ainvoke(...)`` …) so that a cancel of
        the run stops it at once: it runs in a task of its own, which a cancel (on the client's
        thread) cancels on this loop; the calls still open end ``cancelled`` and this raises
        :class:`runwatch.client.Cancelled` (which ends the run ``cancelled`` as it leaves its block)."""
        task = asyncio.ensure_future(awaitable)
        loop = asyncio.get_running_loop()
        fire = lambda: loop.call_soon_threadsafe(task.cancel)  # noqa: E731
        self.run.on_cancel(fire)
        try:
            return await task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if not self.run.cancelled.is_set() or (me is not None and me.cancelling()):
                raise  # the caller's own task was cancelled
            self.end_open("cancelled")
            raise Cancelled from None
        finally:
            self.run.off_cancel(fire)

    # -- tools

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            name = str(kwargs.get("name") or (serialized or {}).get("name") or "tool")
            call_id = str(kwargs.get("tool_call_id") or run_id)
            paused = self._paused.pop(call_id, None)
            if paused is not None:  # a call an interrupt paused, run again on the resume: the same call
                self._tools[run_id] = paused
                return
            self._tools[run_id] = self.run.tool(call_id, name, plain(inputs if inputs is not None else input_str))
        except Exception as e:
            self._report(e)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._tool_done(run_id, getattr(output, "content", output), None)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if type(error).__name__ in _CONTROL_FLOW:  # an interrupt (an approval asked): not the tool failing
            tool = self._tools.pop(run_id, None)
            if tool is not None:  # it runs again when the graph resumes: one call, ended then
                self._paused[tool.call_id] = tool
            return
        cancelled = type(error).__name__ == "CancelledError"
        self._tool_done(run_id, None, "cancelled" if cancelled else f"{type(error).__name__}: {error}")

    def _tool_done(self, run_id: UUID, result: Any, error: str | None) -> None:
        try:
            tool = self._tools.pop(run_id, None)
            if tool is not None:
                tool.result(plain(result))
                tool.end(error)
        except Exception as e:
            self._report(e)

    # -- chains: a LangGraph node starting is a status (runwatch's steps are model calls)

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: Any,
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not metadata:
            return
        node = metadata.get("langgraph_node")
        if node is None or kwargs.get("name") != node or str(node).startswith("__") or "." in str(node):
            return  # not a node, LangGraph's own, or a middleware hook ("HumanInTheLoopMiddleware.after_model")
        try:
            self.run.status(str(node))
        except Exception as e:
            self._report(e)


#: Exceptions LangGraph raises through nodes and tools to pause or redirect a graph: not failures.
_CONTROL_FLOW = frozenset({"GraphInterrupt", "NodeInterrupt", "ParentCommand", "GraphBubbleUp"})


def _model_name(serialized: Any, metadata: dict[str, Any] | None, kwargs: dict[str, Any]) -> str:
    """The model's name: LangChain's ``ls_model_name``, the invocation's ``model``, or the class."""
    if metadata and metadata.get("ls_model_name"):
        return str(metadata["ls_model_name"])
    params = kwargs.get("invocation_params") or {}
    for key in ("model", "model_name", "model_id"):
        if params.get(key):
            return str(params[key])
    if isinstance(serialized, dict):
        for key in ("model", "model_name"):
            value = (serialized.get("kwargs") or {}).get(key)
            if value:
                return str(value)
        ids = serialized.get("id")
        if isinstance(ids, list) and ids:
            return str(ids[-1])
    return str(kwargs.get("name") or "model")


def _usage(message: Any, response: Any) -> dict[str, Any] | None:
    """``{input_tokens, output_tokens}`` from the message's ``usage_metadata`` (or the legacy
    ``llm_output["token_usage"]``); ``None`` if the model reported none."""
    got = getattr(message, "usage_metadata", None)
    if got:
        return {"input_tokens": int(got.get("input_tokens") or 0), "output_tokens": int(got.get("output_tokens") or 0)}
    legacy = (getattr(response, "llm_output", None) or {}).get("token_usage") or {}
    if legacy:
        return {
            "input_tokens": int(legacy.get("prompt_tokens") or 0),
            "output_tokens": int(legacy.get("completion_tokens") or 0),
        }
    return None


def _finish_reason(generation: Any, message: Any, calls: int) -> str:
    info = getattr(generation, "generation_info", None) or {}
    meta = getattr(message, "response_metadata", None) or {}
    for source in (info, meta):
        for key in ("finish_reason", "stop_reason"):
            if source.get(key):
                return str(source[key])
    return "tool_calls" if calls else "stop"


def plain(value: Any) -> Any:
    """``value`` as JSON can carry it: plain data as it is, a Pydantic model as its fields, anything
    else as its text (an event the sender cannot encode must never reach it)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        return msgspec.to_builtins(value, enc_hook=_fallback)
    except Exception:
        return str(value)


def _fallback(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if callable(dump) else str(value)
