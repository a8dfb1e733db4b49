"""The LangChain / LangGraph pieces the adapter's tests drive, offline: a scripted streaming chat model
and the graphs built on it.

``ScriptedChat`` is LangChain's own ``GenericFakeChatModel`` (its answers from an iterator) with what
the tests need besides: it streams a turn's tool calls and usage as a last chunk (the generic one
streams only text and drops them), natively async too; it binds tools (``create_agent`` asks; the
script already says which calls come); it can hang in its first answer until cancelled (``hang_after``); it
answers the same when not streamed (one message, no token callbacks); and it keeps every
conversation it was sent (``seen``), so a test can say what reached the model.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypedDict

from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from pydantic import Field

from runwatch.client.langchain import RunwatchMessages

#: The usage every scripted turn reports.
USAGE = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}


class ScriptedChat(GenericFakeChatModel):
    """``GenericFakeChatModel`` streaming tool calls and usage, binding tools, keeping what it saw."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)
    #: The usage its last chunk reports.
    usage: dict[str, int] = Field(default_factory=lambda: dict(USAGE))
    #: ``streaming=True``: stream under ``invoke`` too (LangChain's switch for chat models).
    streaming: bool = False
    #: Streaming asynchronously, wait (until cancelled) before this chunk of its first answer.
    hang_after: int | None = None

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChat:
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Not streamed (nothing asked for it): the same answer, whole, with no token callbacks."""
        return generate_from_stream(self._stream(messages, stop, None, **kwargs))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages):
            if run_manager and chunk.text:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for n, chunk in enumerate(self._chunks(messages)):
            if n == self.hang_after and len(self.seen) == 1:
                await asyncio.Event().wait()  # until cancelled
            if run_manager and chunk.text:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def _chunks(self, messages: list[BaseMessage]) -> Iterator[ChatGenerationChunk]:
        """The next answer of the script, as chunks: its words, then its tool calls and usage."""
        self.seen.append(list(messages))
        answer = next(self.messages)
        message = AIMessage(content=answer) if isinstance(answer, str) else answer
        for token in re.split(r"(\s)", str(message.content)) if message.content else ():
            yield ChatGenerationChunk(message=AIMessageChunk(content=token, id=message.id))
        calls = [
            {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
            for i, c in enumerate(message.tool_calls)
        ]
        last = AIMessageChunk(content="", tool_call_chunks=calls, usage_metadata=self.usage, chunk_position="last")
        yield ChatGenerationChunk(message=last)


def calling(name: str, args: dict[str, Any], call_id: str = "call_1") -> AIMessage:
    """A model turn that asks for one tool call."""
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id, "type": "tool_call"}])


#: What the deploy tool was called with, per test (it is the tool the approvals guard).
deployed: list[dict[str, Any]] = []


@tool
def deploy(version: str, environment: str) -> str:
    """Deploy a version to an environment."""
    deployed.append({"version": version, "environment": environment})
    return f"deployed {version} to {environment}"


def deploy_agent(model: ScriptedChat, *, per_call: bool = False) -> Any:
    """``create_agent`` with the deploy tool behind LangChain's HumanInTheLoopMiddleware, runwatch's
    steering messages, and a checkpointer."""
    hitl = HumanInTheLoopMiddleware(interrupt_on={"deploy": True}, interrupt_mode="per_call" if per_call else "batched")
    return create_agent(model, tools=[deploy], middleware=[hitl, RunwatchMessages()], checkpointer=InMemorySaver())


def chat_agent(model: ScriptedChat) -> Any:
    """``create_agent`` with no tools and runwatch's steering messages."""
    return create_agent(model, tools=[], middleware=[RunwatchMessages()], checkpointer=InMemorySaver())


class Plan(TypedDict):
    plan: str
    verdict: Any


def review_graph() -> Any:
    """A hand-built graph that asks a person (LangGraph's ``interrupt``) before it goes on."""

    def propose(state: Plan) -> dict[str, Any]:
        return {"plan": "migrate the database"}

    def review(state: Plan) -> dict[str, Any]:
        return {"verdict": interrupt({"plan": state["plan"]})}

    builder = StateGraph(Plan)
    builder.add_node("propose", propose)
    builder.add_node("review", review)
    builder.add_edge(START, "propose")
    builder.add_edge("propose", "review")
    builder.add_edge("review", END)
    return builder.compile(checkpointer=InMemorySaver())
