"""Steering messages people send in runwatch, handed to a LangGraph graph.

Two ways in, both reading the run that reports the graph (found through the config's callbacks:
the :class:`RunwatchCallbackHandler` that ``watch_graph`` adds, or the one you passed):

- :class:`RunwatchMessages`, a middleware for ``langchain.agents.create_agent``. Before each model
  call it adds the messages that came since the last one to the conversation, as ``HumanMessage`` s
  (so the model sees them, and they stay in the agent's state and its checkpoints). A message sent
  with ``mode="interrupt"`` while the model streams (async agents: ``ainvoke``, ``astream``,
  ``watch_graph``) cuts that call: the model is called again at once with what it said so far (an
  ``AIMessage``) and the message after it, and all three join the state in that order; the cut
  step ends ``interrupted``. Anything else waits for the next model call (``queue``).
- :func:`steering_messages`, for a hand-built graph: call it in the node that calls the model and
  add what it returns to the messages you send (and to your state, if you keep them).

Each message is handed over once.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from runwatch.client.optional import framework

framework("langchain", "langchain", has="__version__")

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage  # noqa: E402
from langchain_core.runnables.config import var_child_runnable_config  # noqa: E402

from runwatch.client.langchain.callbacks import RunwatchCallbackHandler  # noqa: E402

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

    from runwatch.client.run import RunBase
    from runwatch.client.wire import Message


def _config_handler() -> tuple[RunwatchCallbackHandler | None, Any]:
    """The handler reporting the runnable that calls this, and that runnable's run id (its
    callbacks' ``parent_run_id``)."""
    config = var_child_runnable_config.get()
    callbacks = (config or {}).get("callbacks")
    handlers = getattr(callbacks, "handlers", callbacks) or ()
    for handler in handlers:
        if isinstance(handler, RunwatchCallbackHandler):
            return handler, getattr(callbacks, "parent_run_id", None)
    return None, None


def current_run() -> RunBase | None:
    """The runwatch run reporting the runnable that calls this (``None`` outside one)."""
    handler, _ = _config_handler()
    return handler.run if handler is not None else None


def steering_messages() -> list[HumanMessage]:
    """The messages people sent the run since the last call, oldest first, as ``HumanMessage`` s
    (``[]`` outside a reported run). Each is handed over once."""
    run = current_run()
    return [] if run is None else _human(run)


def _human(run: RunBase) -> list[HumanMessage]:
    return [HumanMessage(content=m.text, name="runwatch") for m in run.messages()]


class _Cuts:
    """The model calls of one run waiting to be cut by an ``interrupt`` message: each a future on its
    loop, resolved from the client's thread. Registered with the run once (``on_message`` keeps its
    callbacks for the run's life); as many futures as model calls stream at once."""

    _of: weakref.WeakKeyDictionary[Any, _Cuts] = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._waiting: dict[asyncio.Future[None], asyncio.AbstractEventLoop] = {}

    @classmethod
    def of(cls, run: RunBase) -> _Cuts:
        with cls._lock:
            cuts = cls._of.get(run)
            if cuts is None:
                cuts = cls._of[run] = _Cuts()
                run.on_message(cuts._arrived)
            return cuts

    def wait(self) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        self._waiting[future] = asyncio.get_running_loop()
        return future

    def forget(self, future: asyncio.Future[None]) -> None:
        self._waiting.pop(future, None)

    def _arrived(self, message: Message) -> None:
        """(On the client's thread.)"""
        if message.mode != "interrupt":
            return
        for future, loop in list(self._waiting.items()):
            loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class RunwatchMessages(AgentMiddleware):
    """``create_agent(..., middleware=[RunwatchMessages()])``: people's messages join the
    conversation before each model call, and an ``interrupt`` one cuts the call streaming (see the
    module's docstring)."""

    def before_model(self, state: Any, runtime: Runtime[Any]) -> dict[str, Any] | None:
        got = steering_messages()
        return {"messages": got} if got else None

    async def abefore_model(self, state: Any, runtime: Runtime[Any]) -> dict[str, Any] | None:
        return self.before_model(state, runtime)

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], Any]) -> Any:
        return handler(request)  # (synchronous: an interrupt message waits for the next call)

    async def awrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[Any]]) -> Any:
        reporting, parent = _config_handler()
        if reporting is None:
            return await handler(request)
        cuts = _Cuts.of(reporting.run)
        added: list[BaseMessage] = []
        while True:
            call = asyncio.ensure_future(handler(request))
            cut = cuts.wait()
            try:
                await asyncio.wait((call, cut), return_when=asyncio.FIRST_COMPLETED)
            except BaseException:
                call.cancel()
                raise
            finally:
                cuts.forget(cut)
                cut.cancel()
            if call.done():
                return _with(added, call.result())
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
            said = reporting.cut(parent)
            now = [*([AIMessage(content=said)] if said else []), *_human(reporting.run)]
            added += now
            request = request.override(messages=[*request.messages, *now])


def _with(added: list[BaseMessage], response: Any) -> Any:
    """The model's response with the messages a cut added before it (they join the state first)."""
    if not added:
        return response
    if isinstance(response, ModelResponse):
        return ModelResponse(result=[*added, *response.result], structured_response=response.structured_response)
    if isinstance(response, AIMessage):
        return ModelResponse(result=[*added, response])
    return response
