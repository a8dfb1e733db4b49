"""``watch_graph``: a LangGraph graph (``create_agent``, or built by hand with ``interrupt``), run for
real on a scripted streaming model with a checkpointer, as one runwatch run — its tokens reaching
a watcher in order, a cancel from the dashboard stopping it within a second, HumanInTheLoopMiddleware
and ``interrupt`` pauses answered by runwatch approvals (edited arguments reach the tool, a
denial's message reaches the model), and a queued message reaching the next model call."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import interrupt

from runwatch.client import AsyncRunwatch, Cancelled
from runwatch.client.langchain import RunwatchMessages, WatchedGraph, watch_graph
from tests.conftest import Server
from tests.frameworks.graphs import ScriptedChat, calling, chat_agent, deploy_agent, deployed, review_graph
from tests.harness.watcher import Watcher, assert_contiguous, text_of
from tests.server.ingest.agent import stored

ANSWER = "Deploys go out on Tuesdays after the checks pass"
DEPLOY = {"version": "2.4.1", "environment": "production"}


def user(text: str) -> dict[str, Any]:
    return {"messages": [("user", text)]}


async def consume(stream: WatchedGraph) -> list[Any]:
    return [chunk async for chunk in stream]


async def approval_asked(watcher: Watcher, stream: WatchedGraph) -> dict[str, Any]:
    """Subscribe to the stream's run once it has begun; its first ``approval.requested``."""
    await watcher.subscribe((await stream.started()).id)
    return await watcher.wait_for(lambda m: m.get("type") == "approval.requested")


async def decide(server: Server, run_id: str, approval_id: str, body: dict[str, Any]) -> None:
    async with server.client() as c:
        r = await c.post(f"/api/runs/{run_id}/approvals/{approval_id}", json=body)
    assert r.status_code == 200, r.text


async def test_tokens_reach_a_watcher_in_order_and_the_caller_gets_the_graph_s_own_chunks(
    server: Server, arw: AsyncRunwatch
):
    model = ScriptedChat(messages=iter([ANSWER]))
    watcher = await server.watcher()
    chunks: list[Any] = []
    try:
        stream = watch_graph(chat_agent(model), user("when do deploys go out?"), rw=arw, stream_mode="updates")
        async for chunk in stream:
            if not chunks:
                await watcher.subscribe(stream.run.id)
            chunks.append(chunk)
        seen = await watcher.until_finished(stream.run.id)
    finally:
        await watcher.close()
    kept = await stored(server, stream.run.id)
    assert_contiguous(seen)
    assert text_of(seen) == text_of(kept) == ANSWER
    assert all(isinstance(c, dict) for c in chunks) and "model" in chunks[-1]  # "updates": {node: update}
    assert chunks[-1]["model"]["messages"][-1].content == ANSWER
    assert [e["message"] for e in kept if e["type"] == "status"] == ["model"]  # the node; not middleware hooks
    assert kept[-1]["status"] == "succeeded" and kept[0]["type"] == "run.queued"


async def test_a_cancel_from_the_dashboard_stops_the_graph_within_a_second(server: Server, arw: AsyncRunwatch):
    model = ScriptedChat(messages=iter([ANSWER]), hang_after=3)
    watcher = await server.watcher()
    stream = watch_graph(chat_agent(model), user("talk until stopped"), rw=arw)
    job = asyncio.create_task(consume(stream))
    try:
        await watcher.subscribe((await stream.started()).id)
        await watcher.wait_for(lambda m: m.get("type") == "token")
        async with server.client() as c:
            r = await c.post(f"/api/runs/{stream.run.id}/cancel")
        assert r.status_code == 202, r.text
        asked = time.monotonic()
        with pytest.raises(Cancelled):
            await asyncio.wait_for(job, 10)
        took = time.monotonic() - asked
        finished = await watcher.wait_for(lambda m: m.get("type") == "run.finished")
    finally:
        await watcher.close()
    assert took < 1.0, f"the graph stopped {took:.2f} s after the cancel"
    assert finished["status"] == "cancelled"
    steps = [e for e in await stored(server, stream.run.id) if e["type"] == "step.finished"]
    assert [s["finish_reason"] for s in steps] == ["cancelled"]


async def test_a_caller_that_stops_reading_ends_the_run_cancelled(server: Server, arw: AsyncRunwatch):
    model = ScriptedChat(messages=iter([ANSWER]), hang_after=3)
    stream = watch_graph(chat_agent(model), user("start, then stop"), rw=arw, stream_mode="messages")
    async for token, _metadata in stream:
        assert token.content == "Deploys"
        break
    await stream.aclose()
    kept = await stored(server, stream.run.id)
    assert kept[-1]["type"] == "run.finished" and kept[-1]["status"] == "cancelled"
    assert [e["finish_reason"] for e in kept if e["type"] == "step.finished"] == ["cancelled"]


async def test_an_approval_with_edited_arguments_reaches_the_tool(server: Server, arw: AsyncRunwatch):
    deployed.clear()
    model = ScriptedChat(messages=iter([calling("deploy", DEPLOY, "call_d1"), "Deployed to staging."]))
    watcher = await server.watcher()
    stream = watch_graph(deploy_agent(model), user("ship 2.4.1"), rw=arw)
    job = asyncio.create_task(consume(stream))
    try:
        asked = await approval_asked(watcher, stream)
        edited = {**DEPLOY, "environment": "staging"}
        await decide(server, stream.run.id, asked["approval_id"], {"decision": "approve", "arguments": edited})
        await asyncio.wait_for(job, 10)
    finally:
        await watcher.close()
    assert (asked["tool"], asked["arguments"], asked["call_id"]) == ("deploy", DEPLOY, "call_d1")
    assert deployed == [edited]
    kept = await stored(server, stream.run.id)
    (started,) = [e for e in kept if e["type"] == "tool.started"]
    assert started["call_id"] == "call_d1" and started["arguments"] == edited
    assert kept[-1]["status"] == "succeeded"


async def test_a_denial_s_message_reaches_the_model(server: Server, arw: AsyncRunwatch):
    deployed.clear()
    model = ScriptedChat(messages=iter([calling("deploy", DEPLOY, "call_d2"), "Understood, not today."]))
    watcher = await server.watcher()
    stream = watch_graph(deploy_agent(model, per_call=True), user("ship 2.4.1"), rw=arw)
    job = asyncio.create_task(consume(stream))
    try:
        asked = await approval_asked(watcher, stream)
        await decide(server, stream.run.id, asked["approval_id"], {"decision": "deny", "message": "freeze week"})
        await asyncio.wait_for(job, 10)
    finally:
        await watcher.close()
    assert asked["call_id"] == "call_d2" and deployed == []
    answered = [m for m in model.seen[-1] if isinstance(m, ToolMessage)]
    assert len(answered) == 1 and "freeze week" in answered[0].content
    assert answered[0].tool_call_id == "call_d2"


async def test_an_interrupt_in_a_hand_built_graph_resumes_with_the_decision(server: Server, arw: AsyncRunwatch):
    watcher = await server.watcher()
    stream = watch_graph(review_graph(), {"plan": ""}, rw=arw, agent="reviewer", stream_mode="values")
    job = asyncio.create_task(consume(stream))
    try:
        asked = await approval_asked(watcher, stream)
        edited = {"plan": "migrate the database tonight"}
        await decide(server, stream.run.id, asked["approval_id"], {"decision": "approve", "arguments": edited})
        chunks = await asyncio.wait_for(job, 10)
    finally:
        await watcher.close()
    assert (asked["tool"], asked["arguments"]) == ("review", {"plan": "migrate the database"})
    assert chunks[-1]["verdict"] == {"decision": "approved", "arguments": edited, "message": None}


async def test_a_queued_message_reaches_the_next_model_call(server: Server, arw: AsyncRunwatch):
    arrived, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    @tool
    async def wait_for_news() -> str:
        """Wait for news."""
        await release.wait()
        return "no news"

    model = ScriptedChat(messages=iter([calling("wait_for_news", {}), "Focusing on Q3."]))
    agent = create_agent(model, tools=[wait_for_news], middleware=[RunwatchMessages()], checkpointer=InMemorySaver())
    watcher = await server.watcher()
    stream = watch_graph(agent, user("report"), rw=arw)
    job = asyncio.create_task(consume(stream))
    try:
        await watcher.subscribe((await stream.started()).id)
        stream.run.on_message(lambda m: loop.call_soon_threadsafe(arrived.set))
        await watcher.wait_for(lambda m: m.get("type") == "tool.started")
        async with server.client() as c:
            r = await c.post(f"/api/runs/{stream.run.id}/messages", json={"text": "focus on Q3", "mode": "queue"})
        assert r.status_code == 202, r.text
        await asyncio.wait_for(arrived.wait(), 10)
        release.set()
        await asyncio.wait_for(job, 10)
    finally:
        await watcher.close()
    first, second = model.seen
    assert not any(m.content == "focus on Q3" for m in first)
    assert isinstance(second[-1], HumanMessage) and second[-1].content == "focus on Q3"


async def test_an_interrupt_message_cuts_the_model_s_answer_and_the_model_goes_on_with_it(
    server: Server, arw: AsyncRunwatch
):
    model = ScriptedChat(messages=iter([ANSWER, "Q3 it is."]), hang_after=3)
    watcher = await server.watcher()
    stream = watch_graph(chat_agent(model), user("tell me about deploys"), rw=arw, stream_mode="values")
    job = asyncio.create_task(consume(stream))
    try:
        await watcher.subscribe((await stream.started()).id)
        await watcher.wait_for(lambda m: m.get("type") == "token")
        async with server.client() as c:
            body = {"text": "talk about Q3 instead", "mode": "interrupt"}
            r = await c.post(f"/api/runs/{stream.run.id}/messages", json=body)
        assert r.status_code == 202, r.text
        chunks = await asyncio.wait_for(job, 10)
    finally:
        await watcher.close()
    said = "Deploys go"  # the first three chunks: "Deploys", " ", "go"
    assert [(m.type, m.content) for m in model.seen[1][-2:]] == [("ai", said), ("human", "talk about Q3 instead")]
    final = [(m.type, m.content) for m in chunks[-1]["messages"]]
    assert final[-3:] == [("ai", said), ("human", "talk about Q3 instead"), ("ai", "Q3 it is.")]
    steps = [e for e in await stored(server, stream.run.id) if e["type"] == "step.finished"]
    assert [s["finish_reason"] for s in steps] == ["interrupted", "stop"]


@tool
def transfer(amount: int) -> str:
    """Transfer money (asks a person first, from inside the tool)."""
    verdict = interrupt({"amount": amount})
    return f"transferred {amount}: {verdict['decision']}"


async def test_a_tool_that_interrupts_is_one_tool_call_started_once_and_finished_once(
    server: Server, arw: AsyncRunwatch
):
    model = ScriptedChat(messages=iter([calling("transfer", {"amount": 5}), "done"]))
    graph = create_agent(model, tools=[transfer], checkpointer=InMemorySaver())
    watcher = await server.watcher()
    stream = watch_graph(graph, user("pay"), rw=arw, agent="payer")
    job = asyncio.create_task(consume(stream))
    try:
        asked = await approval_asked(watcher, stream)
        await decide(server, stream.run.id, asked["approval_id"], {"decision": "approve"})
        await asyncio.wait_for(job, 10)
        seen = await watcher.until_finished(stream.run.id)
    finally:
        await watcher.close()
    tools = [(e["type"], e["call_id"]) for e in seen if e["type"] in ("tool.started", "tool.finished")]
    assert len(tools) == 2 and [t for t, _ in tools] == ["tool.started", "tool.finished"] and tools[0][1] == tools[1][1]
    finished = next(e for e in seen if e["type"] == "tool.finished")
    assert finished["result"] == "transferred 5: approved" and finished.get("error") is None
    assert seen[-1]["status"] == "succeeded"
