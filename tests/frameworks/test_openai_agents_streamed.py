"""``run_streamed``: an OpenAI Agents SDK agent reported live to runwatch, with the dashboard's
controls — driven offline by the SDK's own ``ScriptedModel`` and by ``OpenAIChatCompletionsModel``
talking HTTP to runwatch's offline ``/v1`` model (``scripted`` and ``http`` below).

It proves: the model's text reaches a WebSocket watcher in order; a cancel from the dashboard ends
the SDK's run within a second and the run ``cancelled``; an approval approved with edited
arguments calls the tool with them, and a denial's message reaches the model, in the same runwatch
run; a queued message is in the next model call's input; an interrupt finishes the turn and the
model then answers the message. (The last few, each with one model: a cancel while a person decides
an approval; the run config's own ``call_model_input_filter`` composed with the adapter's; a caller
that stops iterating.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from agents.run_config import CallModelData, ModelInputData
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call
from openai import AsyncOpenAI
from openai.types.responses import ResponseOutputMessage, ResponseOutputText

from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, RunConfig, Usage, function_tool
from runwatch.agents.offline.model import scenario_text
from runwatch.client import AsyncRunwatch
from runwatch.client.openai_agents import StreamedRun, run_streamed
from tests.conftest import Server
from tests.harness.waiting import eventually
from tests.harness.watcher import Watcher, text_of
from tests.server.ingest.agent import stored


@pytest.fixture(params=["scripted", "http"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def offline(server: Server, key: str) -> AsyncIterator[OpenAIChatCompletionsModel]:
    """The SDK's Chat Completions model, against runwatch's offline model over HTTP."""
    client = AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key)
    yield OpenAIChatCompletionsModel(model="offline", openai_client=client)
    await client.close()


def message_of(parts: list[str]) -> ResponseOutputMessage:
    """An assistant message in ``parts``: the ScriptedModel streams each part as one text delta."""
    content = [ResponseOutputText(text=p, type="output_text", annotations=[], logprobs=[]) for p in parts]
    return ResponseOutputMessage(id="msg_1", type="message", role="assistant", status="completed", content=content)


def scripted_input(model: ScriptedModel, call: int) -> list[dict[str, Any]]:
    """What the ScriptedModel got as input in its ``call``-th call (0-based)."""
    return [dict(item) for item in model.calls[call].input]


async def consume(stream: StreamedRun, on_event: Callable[[Any], None] = lambda e: None) -> list[Any]:
    """Iterate the run's stream events to the end; every event, in order."""
    got = []
    async for event in stream.stream_events():
        on_event(event)
        got.append(event)
    return got


async def decide(server: Server, run_id: str, approval_id: str, body: dict[str, Any]) -> None:
    async with server.client() as c:
        r = await c.post(f"/api/runs/{run_id}/approvals/{approval_id}", json=body)
    assert r.status_code == 200, r.text


async def send_message(server: Server, run_id: str, text: str, mode: str) -> None:
    async with server.client() as c:
        r = await c.post(f"/api/runs/{run_id}/messages", json={"text": text, "mode": mode})
    assert r.status_code == 202, r.text


async def approval_asked(watcher: Watcher, stream: StreamedRun) -> dict[str, Any]:
    """Subscribe to the stream's run once it is registered; its first ``approval.requested``."""
    await eventually(lambda: stream.run_id, what="the run's registration")
    await watcher.subscribe(stream.run_id)
    return await watcher.wait_for(lambda m: m.get("type") == "approval.requested")


def deployer(kind: str, offline: OpenAIChatCompletionsModel, answer: str) -> tuple[Any, str]:
    """A model that asks for one ``deploy`` call, then says ``answer`` (scripted), and what to ask it."""
    if kind == "http":
        return offline, json.dumps({"approvals": 1, "tokens": 3})
    steps = [[function_call("deploy", {"version": "1.1.0"}, call_id="call_1")], [assistant_message(answer)]]
    return ScriptedModel(steps), "deploy 1.1.0"


def deltas(got: list[Any]) -> list[str]:
    return [e.data.delta for e in got if e.type == "raw_response_event" and e.data.type == "response.output_text.delta"]


async def test_the_model_s_text_reaches_a_watcher_in_order(
    server: Server, arw: AsyncRunwatch, kind: str, offline: OpenAIChatCompletionsModel
):
    if kind == "http":
        expected, model, ask = scenario_text(40), offline, json.dumps({"tokens": 40})
    else:
        expected = [f"part {i} " for i in range(40)]
        usage = Usage(requests=1, input_tokens=7, output_tokens=40, total_tokens=47)
        model, ask = ScriptedModel([ModelStep(output=[message_of(expected)], usage=usage)]), "say forty parts"
    agent = Agent(name="writer", model=model, model_settings=ModelSettings(include_usage=True))
    stream = run_streamed(agent, ask, rw=arw)
    watcher = await server.watcher()
    try:
        got: list[Any] = []
        async for event in stream.stream_events():
            if not got:
                await watcher.subscribe(stream.run_id)
            got.append(event)
        seen = await watcher.until_finished(stream.run_id)
    finally:
        await watcher.close()
    kept = await stored(server, stream.run_id)
    assert deltas(got) == expected  # the SDK's own events, unchanged
    assert text_of(seen) == text_of(kept) == "".join(expected) == stream.final_output
    (finished,) = [e for e in kept if e["type"] == "step.finished"]
    assert finished["usage"]["output_tokens"] == 40 and finished["finish_reason"] == "stop"
    assert finished["streamed_text"] is True and 0 <= finished["ttft"] <= finished["duration"]
    assert kept[-1]["status"] == "succeeded"


async def test_a_cancel_from_the_dashboard_ends_the_sdk_run_within_a_second(
    server: Server, arw: AsyncRunwatch, kind: str, offline: OpenAIChatCompletionsModel
):
    midway = asyncio.Event()

    async def forever(call: Any) -> Any:
        midway.set()
        await asyncio.Event().wait()

    if kind == "http":  # a long answer whose second token comes 5 s after its first
        model, ask = offline, json.dumps({"tokens": 3, "rate": 0.2})
    else:
        model, ask = ScriptedModel([ModelStep.respond(forever)]), "think for ever"
    stream = run_streamed(Agent(name="essayist", model=model), ask, rw=arw)
    job = asyncio.create_task(consume(stream, lambda e: deltas([e]) and midway.set()))
    await asyncio.wait_for(midway.wait(), 10)
    async with server.client() as c:
        r = await c.post(f"/api/runs/{stream.run_id}/cancel")
    assert r.status_code == 202, r.text
    answered = time.monotonic()
    await asyncio.wait_for(job, 10)
    assert time.monotonic() - answered < 1.0
    kept = await stored(server, stream.run_id)
    assert (kept[-1]["type"], kept[-1]["status"]) == ("run.finished", "cancelled")


def deploy_tool(calls: list[str]) -> Any:
    @function_tool(needs_approval=True)
    def deploy(version: str) -> str:
        """Deploy a version to production."""
        calls.append(version)
        return f"deployed {version}"

    return deploy


async def test_an_approval_with_edited_arguments_calls_the_tool_with_them(
    server: Server, arw: AsyncRunwatch, kind: str, offline: OpenAIChatCompletionsModel
):
    calls: list[str] = []
    model, ask = deployer(kind, offline, "done")
    stream = run_streamed(Agent(name="deployer", model=model, tools=[deploy_tool(calls)]), ask, rw=arw)
    watcher = await server.watcher()
    try:
        job = asyncio.create_task(consume(stream))
        asked = await approval_asked(watcher, stream)
        edited = {"decision": "approve", "arguments": {"version": "9.9.9"}}
        await decide(server, stream.run_id, asked["approval_id"], edited)
        await asyncio.wait_for(job, 10)
        seen = await watcher.until_finished(stream.run_id)
    finally:
        await watcher.close()
    assert asked["tool"] == "deploy" and asked["arguments"] == {"version": "1.1.0"}
    assert calls == ["9.9.9"]
    (tool,) = [e for e in seen if e["type"] == "tool.finished"]
    assert (tool["call_id"], tool["result"]) == (asked["call_id"], "deployed 9.9.9")
    assert [e["type"] for e in seen].count("run.started") == 1 and seen[-1]["status"] == "succeeded"


async def test_a_denial_s_message_reaches_the_model(
    server: Server, arw: AsyncRunwatch, kind: str, offline: OpenAIChatCompletionsModel
):
    calls: list[str] = []
    model, ask = deployer(kind, offline, "ok")
    stream = run_streamed(Agent(name="deployer", model=model, tools=[deploy_tool(calls)]), ask, rw=arw)
    watcher = await server.watcher()
    try:
        job = asyncio.create_task(consume(stream))
        asked = await approval_asked(watcher, stream)
        await decide(server, stream.run_id, asked["approval_id"], {"decision": "deny", "message": "not on Fridays"})
        await asyncio.wait_for(job, 10)
    finally:
        await watcher.close()
    assert calls == []
    if kind == "http":  # the offline model quotes the tool's result: the denial's message
        assert "not on Fridays" in stream.final_output
    else:
        (output,) = [i for i in scripted_input(model, 1) if i.get("type") == "function_call_output"]
        assert output["output"] == "not on Fridays"
    kept = await stored(server, stream.run_id)
    (tool,) = [e for e in kept if e["type"] == "tool.finished"]
    assert tool["denied"] is True and kept[-1]["status"] == "succeeded"


async def test_a_queued_message_is_in_the_next_model_call_s_input(
    server: Server, arw: AsyncRunwatch, kind: str, offline: OpenAIChatCompletionsModel
):
    stream: StreamedRun

    @function_tool
    async def wait(seconds: float) -> str:
        """Wait, until a person's message has come."""
        await send_message(server, stream.run_id, "focus on Q3", "queue")
        await eventually(lambda: stream.pending_messages, what="the message reaching the run")
        return "waited"

    if kind == "http":
        model, ask = offline, json.dumps({"tool_calls": 1, "tokens": 3})
    else:
        steps = [[function_call("wait", {"seconds": 0}, call_id="call_1")], [assistant_message("ok")]]
        model, ask = ScriptedModel(steps), "wait, then answer"
    stream = run_streamed(Agent(name="planner", model=model, tools=[wait]), ask, rw=arw)
    await asyncio.wait_for(consume(stream), 20)
    if kind == "http":  # the offline model quotes a person's message to a scenario run
        assert stream.final_output == 'You said: "focus on Q3"'
    else:
        assert scripted_input(model, 1)[-1] == {"role": "user", "content": "focus on Q3"}
    assert stream.pending_messages == 0


async def test_an_interrupt_finishes_the_turn_then_the_model_answers_it(
    server: Server, arw: AsyncRunwatch, offline: OpenAIChatCompletionsModel
):
    sent: list[asyncio.Task[None]] = []

    def on_event(event: Any) -> None:
        if deltas([event]) and not sent:
            sent.append(asyncio.create_task(send_message(server, stream.run_id, "stop and summarize", "interrupt")))

    stream = run_streamed(Agent(name="essayist", model=offline), json.dumps({"tokens": 20, "rate": 10}), rw=arw)
    await asyncio.wait_for(consume(stream, on_event), 20)
    await sent[0]
    kept = await stored(server, stream.run_id)
    assert stream.final_output == 'You said: "stop and summarize"'
    assert [e["type"] for e in kept].count("step.started") == 2 and kept[-1]["status"] == "succeeded"
    assert text_of(kept).startswith("".join(scenario_text(20)))


async def test_a_cancel_while_a_person_decides_ends_the_run_cancelled(server: Server, arw: AsyncRunwatch):
    calls: list[str] = []
    model = ScriptedModel([[function_call("deploy", {"version": "1.1.0"}, call_id="call_1")]])
    stream = run_streamed(Agent(name="deployer", model=model, tools=[deploy_tool(calls)]), "deploy", rw=arw)
    watcher = await server.watcher()
    try:
        job = asyncio.create_task(consume(stream))
        await approval_asked(watcher, stream)
        async with server.client() as c:
            r = await c.post(f"/api/runs/{stream.run_id}/cancel")
        assert r.status_code == 202, r.text
        await asyncio.wait_for(job, 10)
        seen = await watcher.until_finished(stream.run_id)
    finally:
        await watcher.close()
    assert calls == [] and seen[-1]["status"] == "cancelled"


async def test_the_run_config_s_own_model_input_filter_still_applies(arw: AsyncRunwatch):
    def mine(data: CallModelData[Any]) -> ModelInputData:
        return ModelInputData(input=data.model_data.input, instructions="from my filter")

    model = ScriptedModel([[assistant_message("ok")]])
    config = RunConfig(call_model_input_filter=mine)
    stream = run_streamed(Agent(name="filtered", model=model), "hi", rw=arw, run_config=config)
    await asyncio.wait_for(consume(stream), 10)
    assert model.calls[0].system_instructions == "from my filter" and stream.final_output == "ok"


async def test_a_caller_that_stops_iterating_stops_the_sdk_run_and_ends_the_run_cancelled(
    server: Server, arw: AsyncRunwatch
):
    model = ScriptedModel([[message_of(["first ", "second "])]])
    stream = run_streamed(Agent(name="quitter", model=model), "say two things", rw=arw)
    async with contextlib.aclosing(stream.stream_events()) as events:
        async for event in events:
            if deltas([event]):
                break
    kept = await stored(server, stream.run_id)
    assert stream.result.is_complete and (kept[-1]["type"], kept[-1]["status"]) == ("run.finished", "cancelled")


async def test_an_interrupt_sent_while_a_person_decides_reaches_the_model_right_after_the_approved_call(
    server: Server, arw: AsyncRunwatch
):
    calls: list[str] = []
    steps = [
        [function_call("deploy", {"version": "1.1.0"}, call_id="call_1")],
        [function_call("deploy", {"version": "1.1.1"}, call_id="call_2")],  # the turn the interrupt ends
        [assistant_message("stopping, as asked")],
    ]
    model = ScriptedModel(steps)
    stream = run_streamed(Agent(name="deployer", model=model, tools=[deploy_tool(calls)]), "deploy", rw=arw)
    watcher = await server.watcher()
    try:
        job = asyncio.create_task(consume(stream))
        asked = await approval_asked(watcher, stream)
        await send_message(server, stream.run_id, "stop deploying", "interrupt")
        await eventually(lambda: stream.pending_messages, what="the message at the adapter")
        await decide(server, stream.run_id, asked["approval_id"], {"decision": "approve"})
        second = await watcher.wait_for(lambda m: m.get("type") == "approval.requested" and m["call_id"] == "call_2")
        await decide(server, stream.run_id, second["approval_id"], {"decision": "deny", "message": "no"})
        await asyncio.wait_for(job, 10)
    finally:
        await watcher.close()
    # the resume's first turn ran the approved call; the model's next call has the interrupt's text
    assert any(item.get("content") == "stop deploying" for item in scripted_input(model, 1))
    assert calls == ["1.1.0"] and len(model.calls) == 3 and stream.final_output == "stopping, as asked"
