"""The agent process of the frameworks part (``python -m bench.frameworks.agent SPEC_JSON``): R runs
of one scripted answer of N tokens (``scripted.py``), on the OpenAI Agents SDK or LangChain, either
bare or reported to runwatch by the adapter (``spec["adapter"]``). One run first, unmeasured (imports,
first connections); then the process's CPU (every thread: the client's too) from the first measured
run's start to the last one's events stored. Prints one JSON line: chunks seen, CPU, wall, errors.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from bench.frameworks import scripted
from runwatch.client import AsyncRunwatch

AGENT = "bench-framework"


async def openai_agents(spec: dict[str, Any], rw: AsyncRunwatch | None) -> int:
    """One run: ``Runner.run_streamed`` (bare) or ``run_streamed(..., rw=rw)``; its text deltas."""
    from agents.stream_events import RawResponsesStreamEvent

    from agents import Runner

    if rw is None:
        result = Runner.run_streamed(spec["sdk_agent"], "go")
    else:
        from runwatch.client.openai_agents import run_streamed

        result = run_streamed(spec["sdk_agent"], "go", rw=rw, agent_name=AGENT)
    chunks = 0
    async for event in result.stream_events():
        if isinstance(event, RawResponsesStreamEvent) and event.data.type == "response.output_text.delta":
            chunks += 1
    return chunks


async def langchain(spec: dict[str, Any], rw: AsyncRunwatch | None) -> int:
    """One run: ``model.astream`` bare, with a handler that does nothing (``spec["noop"]``: what
    LangChain spends calling any handler), or inside a runwatch run with the callback handler."""
    model = spec["model"]
    if rw is None:
        config = {"callbacks": [_noop_handler()]} if spec.get("noop") else {}
        return sum([1 async for _ in model.astream("go", config=config)])
    from runwatch.client.langchain import RunwatchCallbackHandler

    async with rw.run(agent=AGENT, input="go") as run:
        config = {"callbacks": [RunwatchCallbackHandler(run)]}
        return sum([1 async for _ in model.astream("go", config=config)])


async def langgraph(spec: dict[str, Any], rw: AsyncRunwatch | None) -> int:
    """One run of a LangGraph agent, streamed in ``messages`` mode (the model's chunks): bare with
    ``graph.astream``, or through ``watch_graph`` (which reports it as a run of its own)."""
    graph, given = spec["graph"], {"messages": [("user", "go")]}
    if rw is None:
        chunks = graph.astream(given, stream_mode="messages")
    else:
        from runwatch.client.langchain import watch_graph

        chunks = watch_graph(graph, given, rw=rw, agent=AGENT, stream_mode="messages")
    return sum([1 async for message, _ in chunks if message.content])


def _noop_handler() -> Any:
    from langchain_core.callbacks import BaseCallbackHandler

    class Noop(BaseCallbackHandler):
        run_inline = True  # called as the adapter's handler is (directly, not in a thread)

        def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:
            pass

    return Noop()


async def measure(spec: dict[str, Any]) -> dict[str, Any]:
    runs, tokens = spec["runs"], spec["tokens"]
    if spec["framework"] == "openai-agents":
        one, spec["sdk_agent"] = openai_agents, scripted.openai_agents_agent(tokens, runs + 1)
    elif spec["framework"] == "langgraph":
        one, spec["graph"] = langgraph, scripted.langgraph_agent(tokens, runs + 1)
    else:
        one, spec["model"] = langchain, scripted.langchain_model(tokens, runs + 1)
    rw = AsyncRunwatch(spec["url"], spec["key"]) if spec["adapter"] else None
    await one(spec, rw)  # the unmeasured first run
    if rw is not None:
        await rw.flush()
    cpu0, t0 = time.process_time(), time.monotonic()
    chunks = 0
    for _ in range(runs):
        chunks += await one(spec, rw)
    if rw is not None:
        await rw.flush()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    errors = 0
    if rw is not None:
        errors = len(rw.errors) + rw.dropped_tokens
        await rw.aclose()
    return {"chunks": chunks, "cpu_s": round(cpu, 4), "wall_s": round(wall, 3), "errors": errors}


def main() -> None:
    spec = json.loads(sys.argv[1])
    sys.stdout.write(json.dumps(asyncio.run(measure(spec))) + "\n")


if __name__ == "__main__":
    main()
