"""``RunwatchProcessor``: every run of the process, from the SDK's traces — a plain ``Runner.run``
(not streamed, not cancellable; ``OpenAIChatCompletionsModel`` against runwatch's offline ``/v1``,
which reports usage to the SDK's tracing as real models do) shows up with its steps, tool calls and
usage; a step is there while its model call is still running (live at span start); a run
``run_streamed`` reports itself is not reported twice; a model that makes no spans of its own still
shows a step (with usage) per turn; a trace whose agent failed ends its run ``failed``; a full queue
drops spans (counted) without ever blocking the SDK, and never a trace's end."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call
from agents.tracing import agent_span
from agents.tracing.span_data import AgentSpanData
from openai import AsyncOpenAI

from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    RunConfig,
    Runner,
    Usage,
    function_tool,
    generation_span,
    set_trace_processors,
    trace,
)
from runwatch.client import AsyncRunwatch, Runwatch
from runwatch.client.openai_agents import RunwatchProcessor, run_streamed
from tests.conftest import Server
from tests.harness.waiting import eventually
from tests.server.ingest.agent import stored


@pytest.fixture
def processor(rw: Runwatch) -> Iterator[RunwatchProcessor]:
    """The processor, the process's only one while the test runs."""
    installed = RunwatchProcessor(rw)
    set_trace_processors([installed])
    yield installed
    set_trace_processors([])
    installed.shutdown()


async def runs_of(server: Server, agent: str) -> list[dict[str, Any]]:
    async with server.client() as c:
        return (await c.get("/api/runs", params={"agent": agent})).json()["runs"]


@function_tool
def lookup(q: str) -> str:
    """Look something up."""
    return f"found {q}"


async def test_a_runner_run_shows_up_with_its_steps_tools_and_usage(
    server: Server, key: str, processor: RunwatchProcessor
):
    client = AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key)
    model = OpenAIChatCompletionsModel(model="offline", openai_client=client)
    agent = Agent(name="helper", model=model, tools=[lookup], model_settings=ModelSettings(include_usage=True))
    config = RunConfig(workflow_name="support desk")
    result = await Runner.run(agent, 'call lookup {"q": "x"}', run_config=config)
    await client.close()
    await asyncio.to_thread(processor.force_flush)
    (run,) = await runs_of(server, "support-desk")
    kept = await stored(server, run["id"])
    assert "found x" in result.final_output and run["external"] is True
    kinds = [e["type"] for e in kept if e["type"] not in ("status", "run.queued", "run.started", "token")]
    assert kinds == [
        "step.started",
        "step.finished",
        "tool.started",
        "tool.finished",
        "step.started",
        "step.finished",
        "run.finished",
    ]
    started = [e for e in kept if e["type"] == "step.started"]
    finished = [e for e in kept if e["type"] == "step.finished"]
    assert [s["model"] for s in started] == ["offline", "offline"]
    assert all(f["usage"]["input_tokens"] > 0 and f["usage"]["output_tokens"] > 0 for f in finished)
    (tool,) = [e for e in kept if e["type"] == "tool.finished"]
    assert (tool["tool"], tool["result"]) == ("lookup", "found x")
    assert "agent helper" in [e["message"] for e in kept if e["type"] == "status"]
    assert kept[-1]["status"] == "succeeded" and processor.dropped == 0


async def test_a_step_shows_up_while_its_model_call_runs(server: Server, processor: RunwatchProcessor):
    release = asyncio.Event()

    async def slow(call: Any) -> Any:
        await release.wait()
        return [assistant_message("done")]

    agent = Agent(name="helper", model=ScriptedModel([ModelStep.respond(slow)], emit_traces=True))
    job = asyncio.create_task(Runner.run(agent, "go", run_config=RunConfig(workflow_name="live-check")))
    await eventually(lambda: runs_of(server, "live-check"), what="the run's registration")
    (run,) = await runs_of(server, "live-check")

    async def step_started() -> bool:
        return any(e["type"] == "step.started" for e in await stored(server, run["id"]))

    await eventually(step_started, what="step.started while the model call runs")
    assert not job.done()  # the generation span is still open
    release.set()
    await job
    await asyncio.to_thread(processor.force_flush)
    assert (await stored(server, run["id"]))[-1]["status"] == "succeeded"


async def test_a_run_that_run_streamed_reports_is_not_reported_twice(
    server: Server, arw: AsyncRunwatch, processor: RunwatchProcessor
):
    agent = Agent(name="streamer", model=ScriptedModel([[assistant_message("hi")]], emit_traces=True))
    stream = run_streamed(agent, "hello", rw=arw, run_config=RunConfig(workflow_name="streamer"))
    async for _ in stream.stream_events():
        pass
    await asyncio.to_thread(processor.force_flush)
    runs = await runs_of(server, "streamer")
    assert [r["id"] for r in runs] == [stream.run_id]


async def test_a_failed_agent_ends_its_run_failed(server: Server, processor: RunwatchProcessor):
    agent = Agent(name="helper", model=ScriptedModel([RuntimeError("model down")], emit_traces=True))
    with pytest.raises(RuntimeError, match="model down"):
        await Runner.run(agent, "go", run_config=RunConfig(workflow_name="failing-desk"))
    await asyncio.to_thread(processor.force_flush)
    (run,) = await runs_of(server, "failing-desk")
    finished = (await stored(server, run["id"]))[-1]
    assert finished["status"] == "failed" and "model down" in finished["error"]


class _HeldTrace:
    """A trace whose name the worker waits for: the worker stays busy while the test fills the queue."""

    trace_id = "trace_held00000000000000000000000"

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    @property
    def name(self) -> str:
        self.entered.set()
        self.release.wait(10)
        return "held-desk"


def _agent_span(trace_id: str, n: int) -> Any:
    return SimpleNamespace(
        trace_id=trace_id, span_id=f"span_{n}", parent_id=None, error=None, span_data=AgentSpanData(name=f"a{n}")
    )


async def test_a_full_queue_drops_spans_and_counts_them_but_never_a_trace_s_end(server: Server, rw: Runwatch):
    processor = RunwatchProcessor(rw, queue_events=4)
    trace = _HeldTrace()
    processor.on_trace_start(trace)
    await asyncio.to_thread(trace.entered.wait, 10)  # the worker holds the trace's start: the queue is empty
    began = time.monotonic()
    for n in range(10):
        processor.on_span_start(_agent_span(trace.trace_id, n))
    processor.on_trace_end(trace)  # the queue is full: kept beside it
    assert time.monotonic() - began < 0.5  # the callbacks never waited for the worker
    assert processor.dropped == 6
    trace.release.set()
    await asyncio.to_thread(processor.shutdown)
    (run,) = await runs_of(server, "held-desk")
    kept = await stored(server, run["id"])
    assert [e["message"] for e in kept if e["type"] == "status"] == ["agent a0", "agent a1", "agent a2", "agent a3"]
    assert (kept[-1]["type"], kept[-1]["status"]) == ("run.finished", "succeeded")


async def test_a_model_that_traces_nothing_still_shows_a_step_per_turn(server: Server, processor: RunwatchProcessor):
    usage = Usage(requests=1, input_tokens=11, output_tokens=5, total_tokens=16)
    steps = [
        ModelStep(output=[function_call("lookup", {"q": "y"}, call_id="call_1")], usage=usage),
        ModelStep(output=[assistant_message("y is found")], usage=usage),
    ]
    agent = Agent(name="helper", model=ScriptedModel(steps), tools=[lookup])  # no generation spans
    await Runner.run(agent, "what is y?", run_config=RunConfig(workflow_name="quiet-desk"))
    await asyncio.to_thread(processor.force_flush)
    (run,) = await runs_of(server, "quiet-desk")
    kept = await stored(server, run["id"])
    finished = [e for e in kept if e["type"] == "step.finished"]
    assert [f["usage"] for f in finished] == [{"input_tokens": 11, "output_tokens": 5, "estimated": False}] * 2
    assert [e["tool"] for e in kept if e["type"] == "tool.finished"] == ["lookup"]


async def test_overlapping_model_calls_of_a_trace_each_end_their_own_step(server: Server, processor: RunwatchProcessor):
    with trace("overlap-desk") as whole:  # the SDK's own tracing API, as parallel agents of one trace use it
        first = generation_span(model="m1", parent=whole)
        second = generation_span(model="m2", parent=whole)
        first.start()
        second.start()
        first.span_data.usage = {"input_tokens": 100, "output_tokens": 1}
        first.finish()
        second.span_data.usage = {"input_tokens": 5, "output_tokens": 2}
        second.finish()
    await asyncio.to_thread(processor.force_flush)
    (run,) = await runs_of(server, "overlap-desk")
    steps = [
        (e["type"], e["index"]) + ((e["usage"]["input_tokens"],) if "usage" in e else ())
        for e in await stored(server, run["id"])
        if e["type"].startswith("step.")
    ]
    assert steps == [("step.started", 0), ("step.started", 1), ("step.finished", 0, 100), ("step.finished", 1, 5)]


async def test_with_the_server_away_the_worker_keeps_up_and_the_sdk_never_waits():
    with socket.socket() as s:  # a port nothing listens on: no registration is ever answered
        s.bind(("127.0.0.1", 0))
        away = Runwatch(f"http://127.0.0.1:{s.getsockname()[1]}", "no-key", flush_timeout=1)
    installed = RunwatchProcessor(away, flush_seconds=0.5)
    set_trace_processors([installed])
    try:
        started = time.monotonic()
        for i in range(5):
            with trace(f"while-away-{i}"), agent_span(name="a"):
                pass
        traced = time.monotonic() - started
        # every trace's callbacks handled at once: no trace waits for another's registration or end
        await eventually(lambda: installed.waiting == 0, timeout=3, what="the processor's queue drained")
    finally:
        set_trace_processors([])
        await asyncio.to_thread(installed.shutdown)
        await asyncio.to_thread(away.close)
    assert traced < 0.5 and installed.dropped == 0
