"""``run.stream_chat``: the openai SDK, talking HTTP to runwatch's offline model, reported as a step
in one line — the model's tokens in order, its usage and the tool calls it asked for — and closed
at once when a person cancels the run."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from typing import Any

import pytest
from openai import APIConnectionError, AsyncOpenAI, OpenAI

from runwatch.agents.offline.model import scenario_text
from runwatch.client import AsyncRunwatch, ModelToolCall, Runwatch
from tests.conftest import Server
from tests.harness.identity import make_key
from tests.harness.watcher import assert_contiguous, text_of
from tests.server.ingest.agent import stored

CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
    },
}


def ask(scenario: dict[str, Any] | str) -> list[dict[str, str]]:
    """The conversation that asks the offline model for ``scenario`` (a JSON scenario, or text)."""
    return [{"role": "user", "content": scenario if isinstance(scenario, str) else json.dumps(scenario)}]


def steps(events: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's one ``step.started`` and its ``step.finished``."""
    (started,) = [e for e in events if e["type"] == "step.started"]
    (finished,) = [e for e in events if e["type"] == "step.finished"]
    return started, finished


async def test_stream_chat_reports_the_model_s_tokens_in_order_and_its_usage(
    server: Server, key: str, arw: AsyncRunwatch
):
    model = AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key)
    watcher = await server.watcher()
    chunks: list[Any] = []
    try:
        async with arw.run(agent="their-agent", input="stream 60 tokens") as run:
            await watcher.subscribe(run.id)
            async with run.stream_chat(model, model="offline", messages=ask({"tokens": 60, "rate": 200})) as chat:
                async for chunk in chat:
                    if chat.text and not any(c.choices and c.choices[0].delta.content for c in chunks):
                        await watcher.wait_for(lambda m: m.get("type") == "token")  # seen while it streams
                    chunks.append(chunk)
        seen = await watcher.until_finished(run.id)
    finally:
        await watcher.close()
        await model.close()
    kept = await stored(server, run.id)
    assert_contiguous(seen)
    assert text_of(seen) == text_of(kept) == chat.text == "".join(scenario_text(60))
    started, finished = steps(kept)
    usage = chunks[-1].usage  # the caller got the SDK's chunks, the usage chunk last
    assert started["model"] == "offline" and chunks[-1].choices == []
    assert finished["usage"] == {
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "estimated": False,
    }
    assert usage.completion_tokens == 60 and finished["finish_reason"] == "stop"
    assert finished["streamed_text"] is True and finished["tool_calls"] == 0
    assert kept[-1]["status"] == "succeeded"


async def test_stream_chat_assembles_the_tool_call_the_model_asks_for(server: Server, key: str, rw: Runwatch):
    model = OpenAI(base_url=f"{server.url}/v1", api_key=key)
    prompt = ask('call calculator {"expression": "6*7"}')
    with rw.run(agent="their-agent", input="what is 6*7?") as run:
        with run.stream_chat(model, model="offline", messages=prompt, tools=[CALCULATOR]) as chat:
            deltas = sum(1 for chunk in chat for c in chunk.choices if c.delta.tool_calls)
        (call,) = chat.tool_calls
        with run.tool(call.id, call.name, call.parsed()) as t:
            t.result(42)
    model.close()
    kept = await stored(server, run.id)
    assert deltas > 1  # the call came in pieces
    assert call == ModelToolCall(id=call.id, name="calculator", arguments='{"expression":"6*7"}') and call.id
    _, finished = steps(kept)
    assert (finished["finish_reason"], finished["tool_calls"]) == ("tool_calls", 1)
    assert finished["usage"]["estimated"] is False and finished["streamed_text"] is False
    assert chat.assistant_message()["tool_calls"][0]["function"] == {"name": "calculator", "arguments": call.arguments}
    (tool,) = [e for e in kept if e["type"] == "tool.started"]  # the call the agent made, after the step
    assert (tool["call_id"], tool["tool"], tool["arguments"]) == (call.id, "calculator", {"expression": "6*7"})
    assert kept.index(tool) > kept.index(finished)


async def operator_cancels(server: Server, tenant: str, run_id: str) -> float:
    """Cancel the run over REST with an operator's key; when the answer came (monotonic)."""
    operator = await make_key(server, tenant, "operator", "ops")
    async with server.client(operator) as c:
        r = await c.post(f"/api/runs/{run_id}/cancel")
    assert r.status_code == 202, r.text
    return time.monotonic()


#: A long answer whose second token comes 5 s after its first: only cutting the socket stops it sooner.
SLOW = ask({"tokens": 3, "rate": 0.2})


async def test_a_cancel_closes_the_stream_within_a_second_and_ends_the_run_cancelled(
    server: Server, key: str, tenant: str, rw: Runwatch
):
    model = OpenAI(base_url=f"{server.url}/v1", api_key=key)
    streaming: concurrent.futures.Future[str] = concurrent.futures.Future()
    closed: dict[str, Any] = {}

    def agent() -> None:
        with rw.run(agent="their-agent", input="write a long essay") as run:
            chat = run.stream_chat(model, model="offline", messages=SLOW)
            try:
                for _ in chat:
                    if chat.text and not streaming.done():
                        streaming.set_result(run.id)
            finally:
                closed["at"], closed["closed"] = time.monotonic(), chat.stream.response.is_closed
            raise AssertionError("not reached: the cancel raises Cancelled, which ends the block")

    job = asyncio.create_task(asyncio.to_thread(agent))
    run_id = await asyncio.wrap_future(streaming)
    answered = await operator_cancels(server, tenant, run_id)
    await asyncio.wait_for(job, 10)
    model.close()
    assert closed["closed"] and closed["at"] - answered < 1.0
    kept = await stored(server, run_id)
    _, finished = steps(kept)
    assert finished["finish_reason"] == "cancelled" and finished["usage"] == {
        "input_tokens": 0,
        "output_tokens": 1,
        "estimated": True,
    }
    assert (kept[-1]["type"], kept[-1]["status"]) == ("run.finished", "cancelled")


async def test_a_cancel_closes_an_async_stream_within_a_second(
    server: Server, key: str, tenant: str, arw: AsyncRunwatch
):
    model = AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key)
    streaming: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    closed: dict[str, Any] = {}

    async def agent() -> None:
        async with arw.run(agent="their-agent", input="write a long essay") as run:
            chat = run.stream_chat(model, model="offline", messages=SLOW)
            try:
                async for _ in chat:
                    if chat.text and not streaming.done():
                        streaming.set_result(run.id)
            finally:
                closed["at"], closed["closed"] = time.monotonic(), chat.stream.response.is_closed
            raise AssertionError("not reached: the cancel raises Cancelled, which ends the block")

    job = asyncio.create_task(agent())
    run_id = await streaming
    answered = await operator_cancels(server, tenant, run_id)
    await asyncio.wait_for(job, 10)
    await model.close()
    assert closed["closed"] and closed["at"] - answered < 1.0
    kept = await stored(server, run_id)
    assert steps(kept)[1]["finish_reason"] == "cancelled"
    assert (kept[-1]["type"], kept[-1]["status"]) == ("run.finished", "cancelled")


async def test_a_model_call_that_fails_ends_its_step_error_and_the_run_failed(rw: Runwatch, server: Server):
    nowhere = OpenAI(base_url="http://127.0.0.1:9/v1", api_key="none", max_retries=0)
    with pytest.raises(APIConnectionError):
        with rw.run(agent="their-agent", input="ask a model that is not there") as run:
            for _ in run.stream_chat(nowhere, model="offline", messages=ask("hello")):
                pass
    kept = await stored(server, run.id)
    _, finished = steps(kept)
    assert (finished["finish_reason"], finished["error_type"]) == ("error", "connection")
    assert (kept[-1]["status"], kept[-1]["error"].split(":")[0]) == ("failed", "APIConnectionError")
