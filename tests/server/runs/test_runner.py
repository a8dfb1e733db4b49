"""The agent loop against a real OpenAI-compatible endpoint (the offline model of a ``runwatch serve``)."""

from __future__ import annotations

import asyncio
import json

from openai import AsyncOpenAI

from runwatch.agents.events import Token, Totals
from runwatch.agents.loop.agent import Agent
from runwatch.agents.loop.runner import Runner

TOKENS = 20_000


async def test_a_full_speed_stream_lets_the_event_loop_run_between_time_slices(server):
    """Tokens already buffered are parsed in time slices, and between two slices the runner hands the
    loop back (its ``settle``: one turn of the loop without a bus), so fan-out and timers are not held
    back by a fast model. How long a slice holds the loop is a figure of bench/ (``--only slices``).
    """
    client = AsyncOpenAI(base_url=server.url + "/v1", api_key=server.token, max_retries=0)
    tokens: list[Token] = []
    turns = 0  # the probe's turns of the loop
    at_settle: list[int] = []  # the probe's turns at each hand-back

    async def emit(event):
        if isinstance(event, Token):
            tokens.append(event)

    async def settle(run_id: str) -> None:
        at_settle.append(turns)
        await asyncio.sleep(0)

    runner = Runner(client, emit, coalesce_window=0.025, settle=settle)
    running = True

    async def probe() -> None:
        nonlocal turns
        while running:
            turns += 1
            await asyncio.sleep(0)

    probing = asyncio.create_task(probe())
    try:
        scenario = json.dumps({"tokens": TOKENS, "rate": 0})
        await runner.run("run-slices", Agent(name="fast", instructions="."), scenario, "runwatch-offline", Totals())
    finally:
        running = False
        await probing
        await client.close()
    assert sum(t.deltas for t in tokens) == TOKENS
    # 20,000 chunks take far more than ten 2 ms slices to parse, even in the largest reads.
    assert len(at_settle) >= 10, f"{len(at_settle)} hand-backs"
    assert turns > len(at_settle)  # and the loop ran the probe meanwhile
