"""The same scripted run for both measurements of a framework: one model answer of N tokens,
streamed as N deltas by the framework's own test model, nothing else (no tools, no network).

The Agents SDK's package is ``agents``, as is the checkout's runtime folder, which ``python -m``
(run from the checkout) puts first on ``sys.path``: ``agents_sdk()`` imports the SDK from where pip
installed it, as tests/frameworks/conftest.py does.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def agents_sdk() -> ModuleType:
    checkout = {str(ROOT), "", "."}
    kept = sys.path[:]
    sys.path[:] = [p for p in kept if p not in checkout]
    try:
        return importlib.import_module("agents")
    finally:
        sys.path[:] = kept


def words(tokens: int) -> list[str]:
    return [f"w{i} " for i in range(tokens)]


def openai_agents_agent(tokens: int, runs: int) -> Any:
    """An Agents SDK ``Agent`` on a ``ScriptedModel`` that answers each of ``runs`` runs with
    ``tokens`` text deltas (the SDK's own event stream for one message, its one delta split)."""
    sdk = agents_sdk()
    from agents.testing import ModelStep, ScriptedModel, assistant_message
    from agents.testing.model import _stream_events_for_step  # the shipped model's own stream

    parts = words(tokens)
    events = _stream_events_for_step(ModelStep(output=[assistant_message("".join(parts))]), preserve_raw_usage=False)
    stream: list[Any] = []
    for event in events:
        if event.type == "response.output_text.delta":
            stream += [event.model_copy(update={"delta": part}) for part in parts]
        else:
            stream.append(event)
    steps = [ModelStep.stream(stream, output=[assistant_message("".join(parts))]) for _ in range(runs)]
    sdk.set_trace_processors([])  # spans are made as usual; none is exported anywhere
    return sdk.Agent(name="bench", instructions="answer", model=ScriptedModel(steps))


def langchain_model(tokens: int, runs: int) -> Any:
    """LangChain's ``GenericFakeChatModel`` streaming each of ``runs`` answers in chunks: it splits
    the text at its spaces and streams each space as a chunk of its own too (~2 per word)."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    text = "".join(words(tokens))
    return GenericFakeChatModel(messages=iter([AIMessage(content=text) for _ in range(runs)]))


def langgraph_agent(tokens: int, runs: int) -> Any:
    """A LangGraph agent (``langchain.agents.create_agent``, no tools) on ``langchain_model``: one
    model call per run, its answer streamed in chunks."""
    from langchain.agents import create_agent

    return create_agent(langchain_model(tokens, runs), tools=[])
