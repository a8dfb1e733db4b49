"""Figures defined once: a step's times on the events' clock (so a watcher computes the same from
the events), output tokens/s as the text steps' output over their streaming time (the store's
overview and the run view alike), tokens in unknown when the model sent no usage, and unpriced
runs counted apart from a cost, never summed as free.

The store's figures run on SQLite and PostgreSQL; the rest against a real server, some of it
talking to ``tests.harness.fake_model`` (a model that sends tool calls whole, and usage or not).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from runwatch.agents.events import (
    Published,
    RunFinished,
    RunQueued,
    RunStarted,
    StepFinished,
    StepStarted,
    Totals,
    Usage,
    encode,
)
from runwatch.agents.store import SQLiteStore
from runwatch.agents.store.aggregates import Window
from tests.harness.fake_model import TOOL_CALL_TOKENS, FakeModel

TS = 1000.0
WINDOW = Window(since=TS - 60, until=TS + 60, bucket=60)


async def add_run(store, run_id: str, steps: list[StepFinished], *, agent: str = "demo", model: str = "m") -> None:
    """A finished run with these steps, appended as the bus appends it."""
    events: list = [
        RunQueued(run_id=run_id, agent=agent, input="hi", model=model, ts=TS),
        RunStarted(run_id=run_id, agent=agent, ts=TS),
    ]
    for step in steps:
        events += [StepStarted(run_id=run_id, index=step.index, model=model, ts=TS), step]
    events.append(RunFinished(run_id=run_id, status="succeeded", totals=Totals(), ts=TS + 5))
    for seq, event in enumerate(events, 1):
        event.seq = seq
        store.append(Published(run_id, seq, type(event).__struct_config__.tag, encode(event), event))
    await store.flush()


def step(index: int, *, output: int, ttft: float, duration: float, text: bool, cost: float | None) -> StepFinished:
    return StepFinished(
        run_id="",
        index=index,
        finish_reason="stop" if text else "tool_calls",
        usage=Usage(input_tokens=50, output_tokens=output),
        ttft=ttft,
        duration=duration,
        streamed_text=text,
        cost=cost,
        ts=TS,
    )


def tool_then_text(cost: float | None = 0.0) -> list[StepFinished]:
    """A whole tool call (24 tokens in a millisecond), then 40 tokens streamed over 2 s."""
    return [
        step(0, output=24, ttft=0.5, duration=0.501, text=False, cost=cost),
        step(1, output=40, ttft=0.25, duration=2.25, text=True, cost=cost),
    ]


async def test_output_tokens_per_second_counts_only_the_steps_that_streamed_text(store):
    await add_run(store, "r1", tool_then_text())
    (model,) = (await store.overview(WINDOW)).models
    assert model.output_tokens == 64 and model.tokens_per_second == 20.0  # 40 tokens / 2 s, not 64 / 2.001 s


async def test_runs_stored_before_text_steps_were_told_apart_count_all_their_output(tmp_path):
    store = SQLiteStore(tmp_path / "runs.sqlite3", max_pending=100)
    await store.open()
    try:
        await add_run(store, "r1", tool_then_text())
        with sqlite3.connect(tmp_path / "runs.sqlite3") as db:  # as a database upgraded from then holds it
            db.execute("UPDATE runs SET stream_tokens = 0, stream_seconds = 2.001")
        (model,) = (await store.overview(WINDOW)).models
        assert model.tokens_per_second == round(64 / 2.001, 2)  # the figure those runs had
    finally:
        await store.close()


async def test_an_agents_unpriced_runs_are_counted_apart_from_its_cost(store):
    await add_run(store, "free", tool_then_text(cost=0.0), model="runwatch-offline")
    await add_run(store, "unpriced", tool_then_text(cost=None), model="somebody-elses-model")
    await add_run(store, "no-steps", [], model="runwatch-offline")  # nothing to price: not unpriced
    figures = await store.overview(WINDOW)
    (agent,) = figures.agents
    assert (agent.runs, agent.cost, agent.unpriced) == (3, 0.0, 1)
    models = {m.model: (m.cost, m.unpriced) for m in figures.models}
    assert models == {"runwatch-offline": (0.0, 0), "somebody-elses-model": (None, 1)}


@pytest.fixture
def fake_model() -> Iterator[FakeModel]:
    model = FakeModel()
    yield model
    model.close()


def steps_of(events: list[dict]) -> list[tuple[dict, dict]]:
    """Each step's (step.started, step.finished)."""
    started = [e for e in events if e["type"] == "step.started"]
    finished = [e for e in events if e["type"] == "step.finished"]
    assert len(started) == len(finished)
    return list(zip(started, finished, strict=True))


async def test_a_steps_ttft_is_its_first_token_events_time_since_it_started(server):
    events = await server.run_to_end({"tokens": 20, "rate": 100, "ttft": 0.2, "tool_calls": 1})
    (_, tool_step), (text_started, text_step) = steps_of(events)
    first_token = next(e for e in events if e["type"] == "token" and e["seq"] > text_started["seq"])
    assert text_step["ttft"] == first_token["ts"] - text_started["ts"]  # exactly what a watcher computes
    assert text_step["streamed_text"] and text_step["duration"] >= text_step["ttft"] >= 0.2
    assert text_step["ts"] - text_started["ts"] == pytest.approx(text_step["duration"], abs=0.05)
    assert not tool_step["streamed_text"] and 0 <= tool_step["ttft"] <= tool_step["duration"]


async def test_the_first_token_of_a_step_is_published_at_once_not_after_the_token_window(server):
    events = await server.run_to_end({"tokens": 200, "rate": 0})  # as fast as the model can
    tokens = [e for e in events if e["type"] == "token"]
    assert tokens[0]["deltas"] == 1  # the first token alone, at once
    assert len(tokens) < 200  # the rest is still coalesced


async def test_the_overviews_tokens_per_second_is_the_text_steps_output_over_their_streaming_time(
    make_server, fake_model
):
    server = make_server(fake_model.env("llama3.1"), in_process=True)
    events = await server.run_to_end({"tool_calls": 2, "tokens": 30, "rate": 50})
    text = [f for _, f in steps_of(events) if f["streamed_text"]]
    assert len(text) == 1 and text[0]["usage"]["output_tokens"] == 30
    expected = sum(f["usage"]["output_tokens"] for f in text) / sum(f["duration"] - f["ttft"] for f in text)
    async with server.client() as c:
        (model,) = (await c.get("/api/overview", params={"window": 900})).json()["models"]
    assert model["output_tokens"] == 30 + 2 * TOOL_CALL_TOKENS
    assert model["tokens_per_second"] == round(expected, 2)


async def test_a_step_without_usage_says_its_input_is_unknown_even_with_no_text(make_server, fake_model):
    server = make_server(fake_model.env("llama3.1"), in_process=True)
    events = await server.run_to_end({"tool_calls": 1, "tokens": 5, "usage": False})
    (_, tool_step), (_, text_step) = steps_of(events)
    assert tool_step["usage"] == {"input_tokens": 0, "output_tokens": 0, "estimated": True}
    assert text_step["usage"] == {"input_tokens": 0, "output_tokens": 5, "estimated": True}
