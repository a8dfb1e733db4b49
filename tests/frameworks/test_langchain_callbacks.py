"""``RunwatchCallbackHandler``: a LangChain chat model and agent, run for real (offline, on a scripted
streaming model), reported into a runwatch run the caller opened — each streamed token reaching a
watcher in order, the model call a step with its usage, tools with their arguments, results and
errors, a cancel from the dashboard stopping the call within a second — and never raising into
LangChain, which it imports only when first used."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage
from langchain_core.tools import tool

from runwatch.client import AsyncRunwatch, Runwatch
from runwatch.client.langchain import RunwatchCallbackHandler
from tests.conftest import Server
from tests.frameworks.graphs import USAGE, ScriptedChat, calling
from tests.harness.watcher import assert_contiguous, text_of
from tests.server.ingest.agent import stored

ANSWER = "The quarter closed with revenue up four percent on the year before"


async def test_streamed_tokens_reach_a_watcher_in_order_as_one_step_with_its_usage(server: Server, arw: AsyncRunwatch):
    model = ScriptedChat(messages=iter([ANSWER]))
    watcher = await server.watcher()
    try:
        async with arw.run(agent="lc-model", input="how was the quarter?") as run:
            await watcher.subscribe(run.id)
            handler = RunwatchCallbackHandler(run)
            streamed = [c.content async for c in model.astream("how was the quarter?", {"callbacks": [handler]})]
        seen = await watcher.until_finished(run.id)
    finally:
        await watcher.close()
    kept = await stored(server, run.id)
    assert_contiguous(seen)
    assert text_of(seen) == text_of(kept) == "".join(streamed) == ANSWER
    (started,) = [e for e in kept if e["type"] == "step.started"]
    (finished,) = [e for e in kept if e["type"] == "step.finished"]
    assert started["model"] == "ScriptedChat" and finished["index"] == started["index"]
    assert finished["usage"]["input_tokens"] == USAGE["input_tokens"]
    assert finished["usage"]["output_tokens"] == USAGE["output_tokens"]
    assert finished["finish_reason"] == "stop" and finished["streamed_text"] is True
    assert kept[-1]["status"] == "succeeded"


async def test_a_cancel_from_the_dashboard_stops_the_chain_within_a_second(server: Server, arw: AsyncRunwatch):
    model = ScriptedChat(messages=iter([ANSWER]), hang_after=3, streaming=True)
    watcher = await server.watcher()
    try:
        async with arw.run(agent="lc-model", input="talk until stopped", capabilities=["cancel"]) as run:
            await watcher.subscribe(run.id)
            handler = RunwatchCallbackHandler(run)

            async def cancel_once_it_streams() -> float:
                await watcher.wait_for(lambda m: m.get("type") == "token")
                async with server.client() as c:
                    r = await c.post(f"/api/runs/{run.id}/cancel")
                assert r.status_code == 202, r.text
                return time.monotonic()

            canceller = asyncio.create_task(cancel_once_it_streams())
            await handler.cancellable(model.ainvoke("talk", {"callbacks": [handler]}))
            raise AssertionError("not reached: the cancel stops the call")
        took = time.monotonic() - await canceller
        finished = await watcher.wait_for(lambda m: m.get("type") == "run.finished")
    finally:
        await watcher.close()
    assert took < 1.0, f"the chain stopped {took:.2f} s after the cancel"
    assert finished["status"] == "cancelled"
    steps = [e for e in await stored(server, run.id) if e["type"] == "step.finished"]
    assert [s["finish_reason"] for s in steps] == ["cancelled"]


@tool
def lookup(quarter: str) -> str:
    """Look a quarter's revenue up."""
    return f"{quarter}: 4.2M"


@tool
def broken(quarter: str) -> str:
    """A tool that fails."""
    raise ValueError(f"no data for {quarter}")


async def test_an_agent_s_tool_calls_are_reported_with_the_model_s_call_ids(server: Server, arw: AsyncRunwatch):
    script = [calling("lookup", {"quarter": "Q3"}, "call_q3"), "Q3 made 4.2M"]
    agent = create_agent(ScriptedChat(messages=iter(script)), tools=[lookup])
    async with arw.run(agent="lc-tools", input="Q3 revenue?") as run:
        config = {"callbacks": [RunwatchCallbackHandler(run)]}
        async for _ in agent.astream({"messages": [("user", "Q3 revenue?")]}, config, stream_mode="messages"):
            pass
    kept = await stored(server, run.id)
    (started,) = [e for e in kept if e["type"] == "tool.started"]
    (finished,) = [e for e in kept if e["type"] == "tool.finished"]
    assert (started["call_id"], started["tool"], started["arguments"]) == ("call_q3", "lookup", {"quarter": "Q3"})
    assert (finished["call_id"], finished["result"]) == ("call_q3", "Q3: 4.2M") and finished["error"] is None
    steps = [e for e in kept if e["type"] == "step.finished"]
    assert [s["finish_reason"] for s in steps] == ["tool_calls", "stop"] and steps[0]["tool_calls"] == 1
    assert text_of(kept) == "Q3 made 4.2M"


async def test_a_tool_that_raises_finishes_with_its_error(server: Server, arw: AsyncRunwatch):
    model = ScriptedChat(messages=iter([calling("broken", {"quarter": "Q4"})]))
    agent = create_agent(model, tools=[broken])
    with pytest.raises(ValueError, match="no data for Q4"):
        async with arw.run(agent="lc-tools", input="Q4 revenue?") as run:
            config = {"callbacks": [RunwatchCallbackHandler(run)]}
            await agent.ainvoke({"messages": [("user", "Q4 revenue?")]}, config)
    kept = await stored(server, run.id)
    (finished,) = [e for e in kept if e["type"] == "tool.finished"]
    assert finished["error"] == "ValueError: no data for Q4" and finished["tool"] == "broken"
    assert kept[-1]["status"] == "failed"


async def test_concurrent_model_calls_are_each_a_whole_step(server: Server, arw: AsyncRunwatch):
    answers = {"first": "one two three", "second": "four five six"}
    outputs = {"first": 3, "second": 30}
    models = {
        name: ScriptedChat(messages=iter([text]), usage={**USAGE, "output_tokens": outputs[name]})
        for name, text in answers.items()
    }

    async def streamed(name: str, handler: RunwatchCallbackHandler) -> str:
        config = {"callbacks": [handler], "metadata": {"ls_model_name": name}}
        return "".join([chunk.content async for chunk in models[name].astream("go", config)])

    async with arw.run(agent="lc-batch", input="two at once") as run:
        handler = RunwatchCallbackHandler(run)
        got = await asyncio.gather(*(streamed(name, handler) for name in answers))
    kept = await stored(server, run.id)
    model_of = {e["index"]: e["model"] for e in kept if e["type"] == "step.started"}
    usage_of = {model_of[e["index"]]: e["usage"]["output_tokens"] for e in kept if e["type"] == "step.finished"}
    assert got == list(answers.values())
    assert sorted(model_of) == [0, 1] and usage_of == outputs  # each call's end on its own step
    said = text_of(kept)
    assert sorted(said.replace(" ", "")) == sorted("".join(answers.values()).replace(" ", ""))
    for text in answers.values():  # each call's words all there, in its order (the two interleave)
        at = [said.find(word) for word in text.split()]
        assert -1 not in at and at == sorted(at), (said, text)


async def test_a_model_that_does_not_stream_sends_its_answer_as_one_token(server: Server, arw: AsyncRunwatch):
    model = ScriptedChat(messages=iter([AIMessage(content="all done", id=str(uuid.uuid4()))]))
    async with arw.run(agent="lc-model", input="finish") as run:
        answer = await model.ainvoke("finish", {"callbacks": [RunwatchCallbackHandler(run)]})
    kept = await stored(server, run.id)
    assert answer.content == text_of(kept) == "all done"
    (finished,) = [e for e in kept if e["type"] == "step.finished"]
    assert finished["streamed_text"] is True and finished["finish_reason"] == "stop"


def test_a_failing_report_never_raises_into_langchain(server: Server, rw: Runwatch):
    """Reporting that breaks (here: the run's outbox taken away for the call) leaves LangChain's
    call whole; the error goes to the client's errors."""
    with rw.run(agent="lc-model", input="break the reporting") as run:
        handler = RunwatchCallbackHandler(run)
        outbox, run._link.outbox = run._link.outbox, None  # every report now raises inside the handler
        try:
            answer = ScriptedChat(messages=iter(["still fine"])).invoke("go", {"callbacks": [handler]})
        finally:
            run._link.outbox = outbox
    assert answer.content == "still fine"
    assert any(isinstance(e, AttributeError) for e in rw.errors)


LAZY = """
import sys
import runwatch.client.langchain as adapter
assert not [m for m in sys.modules if m.split(".")[0] in ("langchain", "langchain_core", "langgraph")]
adapter.RunwatchCallbackHandler
assert "langchain_core" in sys.modules
print("ok")
"""

MISSING = """
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "langchain_core":
            raise ImportError("not installed")
sys.meta_path.insert(0, Refuse())
from runwatch.client.optional import MissingFramework
try:
    from runwatch.client.langchain import RunwatchCallbackHandler
except MissingFramework as e:
    print(e)
"""


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_adapter_imports_langchain_only_when_a_name_is_first_used(tmp_path: Path):
    result = _python(LAZY, tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_without_langchain_the_adapter_names_the_extra_to_install(tmp_path: Path):
    result = _python(MISSING, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'pip install "runwatch[langchain]"' in result.stdout
