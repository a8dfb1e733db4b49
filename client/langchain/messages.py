"""Steering messages people send in runwatch, handed to a LangGraph graph at its next model call.

Two ways in, both reading the run that reports the graph (found through the config's callbacks:
the :class:`RunwatchCallbackHandler` that ``watch_graph`` adds, or the one you passed):

- :class:`RunwatchMessages`, a middleware for ``langchain.agents.create_agent``: before each model
  call it adds the messages that came since the last one to the conversation, as ``HumanMessage`` s
  (so the model sees them, and they stay in the agent's state and its checkpoints).
- :func:`steering_messages`, for a hand-built graph: call it in the node that calls the model and
  add what it returns to the messages you send (and to your state, if you keep them).

Each message is handed over once. Both modes (``queue``, ``interrupt``) are handed over at the next
model call: an ``interrupt`` message does not cut the model call in progress here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runwatch.client.optional import framework

framework("langchain", "langchain", has="__version__")

from langchain.agents.middleware import AgentMiddleware  # noqa: E402
from langchain_core.messages import HumanMessage  # noqa: E402
from langchain_core.runnables.config import var_child_runnable_config  # noqa: E402

from runwatch.client.langchain.callbacks import RunwatchCallbackHandler  # noqa: E402

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

    from runwatch.client.run import RunBase


def current_run() -> RunBase | None:
    """The runwatch run reporting the runnable that calls this (``None`` outside one)."""
    config = var_child_runnable_config.get()
    callbacks = (config or {}).get("callbacks")
    handlers = getattr(callbacks, "handlers", callbacks) or ()
    for handler in handlers:
        if isinstance(handler, RunwatchCallbackHandler):
            return handler.run
    return None


def steering_messages() -> list[HumanMessage]:
    """The messages people sent the run since the last call, oldest first, as ``HumanMessage`` s
    (``[]`` outside a reported run). Each is handed over once."""
    run = current_run()
    if run is None:
        return []
    return [HumanMessage(content=m.text, name="runwatch") for m in run.messages()]


class RunwatchMessages(AgentMiddleware):
    """``create_agent(..., middleware=[RunwatchMessages()])``: before each model call, the steering
    messages that came since the last one join the conversation (the agent's ``messages``)."""

    def before_model(self, state: Any, runtime: Runtime[Any]) -> dict[str, Any] | None:
        got = steering_messages()
        return {"messages": got} if got else None

    async def abefore_model(self, state: Any, runtime: Runtime[Any]) -> dict[str, Any] | None:
        return self.before_model(state, runtime)
