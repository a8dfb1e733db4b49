"""The offline model speaks the OpenAI streaming protocol: checked with the official openai client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from openai import AsyncOpenAI

from runwatch.agents.offline.demo import demo_agent
from runwatch.agents.offline.model import OFFLINE_MODEL, plan_reply, scenario_text
from runwatch.agents.offline.stream import TextStream
from tests.harness.waiting import eventually
from tests.harness.watcher import text_of

TOOLS = demo_agent().tool_specs()
SCENARIO_WITH_TOOLS = json.dumps({"tool_calls": 2, "tool_seconds": 1.5, "parallel": True})


@pytest.fixture
async def client(server):
    async with AsyncOpenAI(base_url=server.url + "/v1", api_key=server.token) as c:
        yield c


async def _stream(client, messages, tools=TOOLS):
    stream = await client.chat.completions.create(
        model=OFFLINE_MODEL, messages=messages, tools=tools, stream=True, stream_options={"include_usage": True}
    )
    return [chunk async for chunk in stream]


async def test_a_scenario_streams_its_tokens_then_a_usage_chunk(client):
    chunks = await _stream(client, [{"role": "user", "content": json.dumps({"tokens": 12})}])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(scenario_text(12))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12


async def test_a_scenario_with_tool_calls_asks_for_the_wait_tool(client):
    chunks = await _stream(client, [{"role": "user", "content": SCENARIO_WITH_TOOLS}])
    calls = {}
    for c in chunks:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            calls.setdefault(tc.index, {"name": "", "args": ""})
            calls[tc.index]["name"] += tc.function.name or ""
            calls[tc.index]["args"] += tc.function.arguments or ""
    assert [(c["name"], json.loads(c["args"])) for c in calls.values()] == [("wait", {"seconds": 1.5})] * 2
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


async def test_free_text_gets_tool_calls_then_an_answer_using_their_results(client):
    messages = [{"role": "user", "content": "what is 2 * 21?"}]
    chunks = await _stream(client, messages)
    call = next(tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or [] if tc.id)
    assert call.function.name == "calculator"
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "calculator", "arguments": json.dumps({"expression": "2 * 21"})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "42"},
    ]
    answer = "".join(c.choices[0].delta.content or "" for c in await _stream(client, messages) if c.choices)
    assert "**calculator** answered `42`" in answer and "offline model" in answer


async def test_non_streaming_requests_get_a_whole_completion(client):
    completion = await client.chat.completions.create(
        model=OFFLINE_MODEL, messages=[{"role": "user", "content": '{"tokens": 3}'}]
    )
    assert completion.choices[0].message.content == "".join(scenario_text(3))
    assert completion.usage.completion_tokens == 3


async def test_a_request_that_does_not_stream_gets_the_tool_calls_whole(client):
    completion = await client.chat.completions.create(
        model=OFFLINE_MODEL, messages=[{"role": "user", "content": SCENARIO_WITH_TOOLS}], tools=TOOLS
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls]
    assert calls == [("wait", {"seconds": 1.5})] * 2
    assert len({c.id for c in choice.message.tool_calls}) == 2


async def test_ttft_delays_the_first_token(client):
    started = time.monotonic()
    stream = await client.chat.completions.create(
        model=OFFLINE_MODEL, messages=[{"role": "user", "content": json.dumps({"tokens": 2, "ttft": 0.4})}], stream=True
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    assert time.monotonic() - started >= 0.4  # (a lower bound: the delay is the behaviour)


async def test_paced_streams_are_written_by_the_pacer_at_their_rate(server, client):
    """Many paced streams at once: each gets all its tokens, in order, no faster than its rate."""

    async def one(tokens: int) -> tuple[str, float]:
        started = time.monotonic()
        chunks = await _stream(client, [{"role": "user", "content": json.dumps({"tokens": tokens, "rate": 40})}])
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].usage.completion_tokens == tokens
        return text, time.monotonic() - started

    streams = asyncio.gather(*(one(12 + i) for i in range(20)))
    async with server.client() as http:

        async def all_paced() -> bool:  # every stream in the pacer's hands at once, not one at a time
            return (await http.get("/api/health")).json()["offline_paced"] >= 20

        await eventually(all_paced, what="20 streams in the pacer", interval=0.02)
        results = await streams
        assert (await http.get("/api/health")).json()["offline_paced"] == 0
    for i, (text, took) in enumerate(results):
        assert text == "".join(scenario_text(12 + i))
        assert took >= (12 + i) / 40 - 0.05  # paced: the pacer may send a token 3 ms early, no more


async def test_a_paced_stream_ends_with_its_last_token_not_one_interval_later(client):
    """Tokens 1 s apart; the end of the stream (its finish and usage) comes with the last token."""
    asked = time.monotonic()
    stream = await client.chat.completions.create(
        model=OFFLINE_MODEL,
        messages=[{"role": "user", "content": json.dumps({"tokens": 2, "rate": 1})}],
        stream=True,
        stream_options={"include_usage": True},
    )
    arrivals = [(time.monotonic(), chunk) async for chunk in stream]
    tokens = [at for at, chunk in arrivals if chunk.choices and chunk.choices[0].delta.content]
    end, last = arrivals[-1]
    assert last.usage.completion_tokens == 2 and len(tokens) == 2
    # Paced: the second token is due 1 s after the first, which is due at once (measured from the
    # request: a busy machine may deliver the first late, never the second early).
    assert tokens[1] - asked >= 1 - 0.05, f"the second token came {tokens[1] - asked:.2f} s after the request"
    assert tokens[1] - tokens[0] >= 0.5, "the tokens came together, not paced"
    # Half an interval apart at most: with the last token, not one interval (another second) later.
    assert end - tokens[1] < 0.5, f"the end came {end - tokens[1]:.2f} s after the last token"


async def _first_token(chunks: AsyncIterator) -> None:
    async for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            return
    raise AssertionError("the stream ended without a token")


async def test_a_fast_stream_is_not_held_back_by_a_slow_one_the_pacer_sleeps_for(client):
    """The pacer sleeps until its first stream's next token; a new stream due sooner wakes it: the
    fast stream is over before the slow one's second token, which is due 5 s after its first."""
    slow = await client.chat.completions.create(
        model=OFFLINE_MODEL, messages=[{"role": "user", "content": json.dumps({"tokens": 2, "rate": 0.2})}], stream=True
    )
    slow_chunks = aiter(slow)
    await _first_token(slow_chunks)  # the slow stream is in the pacer, which now sleeps for its next token
    slow_second = asyncio.create_task(_first_token(slow_chunks))
    try:
        chunks = await _stream(client, [{"role": "user", "content": json.dumps({"tokens": 5, "rate": 100})}])
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(scenario_text(5))
        assert not slow_second.done(), "the fast stream waited for the slow stream's next token"
    finally:
        slow_second.cancel()
        await slow.close()


def _rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) * 1024


async def test_a_scenario_of_millions_of_tokens_is_generated_as_it_streams(make_server):
    """Built up front, three million tokens cost the server about 200 MB before the first one is sent."""
    srv = make_server()
    before = _rss(srv.proc.pid)
    async with AsyncOpenAI(base_url=srv.url + "/v1", api_key=srv.token) as c:
        stream = await c.chat.completions.create(
            model=OFFLINE_MODEL, messages=[{"role": "user", "content": json.dumps({"tokens": 3_000_000})}], stream=True
        )
        received = 0
        async for chunk in stream:
            received += bool(chunk.choices and chunk.choices[0].delta.content)
            if received == 20_000:
                break
        grown = _rss(srv.proc.pid) - before
        await stream.close()
    assert received == 20_000
    assert grown < 50 * 2**20, f"the server grew by {grown / 2**20:.0f} MiB"


def test_aligned_streams_of_one_rate_fall_due_together_and_keep_their_pace():
    streams = [TextStream(iter(["a ", "b ", "c "]), 50, 1, b"", b"") for _ in range(2)]
    streams[1].start += 0.007  # started 7 ms later
    for s in streams:
        s.align(0.02)
    firsts = [s.due_at() for s in streams]
    assert firsts == [s.start for s in streams]  # the first chunk is never held back
    for s in streams:
        s.take()
    seconds = [s.due_at() for s in streams]
    s0 = streams[0]
    assert [round(t / 0.02) * 0.02 for t in seconds] == pytest.approx(seconds, abs=1e-9)  # on one 20 ms grid
    assert 0.02 <= seconds[0] - s0.start < 0.04  # at most one interval later than unaligned
    s0.take()
    assert s0.due_at() - seconds[0] == pytest.approx(0.02)  # the pace is unchanged


def test_call_with_nested_json_arguments_calls_the_tool_with_all_of_them():
    prompt = 'call deploy {"version": "2.1.0", "target": {"env": "staging", "regions": [{"name": "eu"}]}} now'
    reply = plan_reply([{"role": "user", "content": prompt}], {"deploy"})
    assert reply.tool_calls == [
        ("deploy", {"version": "2.1.0", "target": {"env": "staging", "regions": [{"name": "eu"}]}})
    ]


def test_a_call_written_inside_another_calls_arguments_is_not_a_call():
    prompt = 'call clock {"note": "then call calculator {\\"expression\\": \\"1+1\\"}"}'
    reply = plan_reply([{"role": "user", "content": prompt}], {"clock", "calculator"})
    assert [name for name, _ in reply.tool_calls] == ["clock"]


async def test_call_with_arguments_that_are_not_json_answers_what_is_wrong_and_calls_nothing(server):
    events = await server.run_to_end('call calculator {"expression": 6 * 7}')
    assert not [e for e in events if e["type"] == "tool.started"]
    assert events[-1]["status"] == "succeeded"
    assert text_of(events) == (
        "The arguments of `call calculator` are not valid JSON (Expecting ',' delimiter at character 18 of them),"
        ' so I did not call it. Write them as one JSON object, e.g. `call calculator {"key": "value"}`.'
    )
