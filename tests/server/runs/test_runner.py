"""The agent loop against a real OpenAI-compatible endpoint (the offline model of a ``runwatch serve``)."""

from __future__ import annotations

import asyncio
import gc
import json
import time

from openai import AsyncOpenAI

from runwatch.agents.events import Token, Totals
from runwatch.agents.loop.agent import Agent
from runwatch.agents.loop.runner import Runner

TOKENS = 20_000


async def test_a_full_speed_stream_lets_the_event_loop_run_between_time_slices(server):
    """Tokens already buffered are parsed in slices, so fan-out and timers are not held back by a fast model.

    The probe counts the CPU time the loop's thread spends away from it between its turns: time the
    OS took the thread off the core is not counted, so a busy machine does not make this fail.
    """
    client = AsyncOpenAI(base_url=server.url + "/v1", api_key=server.token, max_retries=0)
    tokens: list[Token] = []

    async def emit(event):
        if isinstance(event, Token):
            tokens.append(event)

    runner = Runner(client, emit, coalesce_window=0.025, time_slice=0.002)
    gaps: list[float] = []
    running = True

    async def probe() -> None:
        while running:
            before = time.thread_time()
            await asyncio.sleep(0)
            gaps.append(time.thread_time() - before)

    probing = asyncio.create_task(probe())
    gc.disable()  # a collection of the test process's own heap is not the runner's doing
    try:
        # Long enough for 100 turns of the loop even when a busy machine hands the stream over in
        # larger reads (about 2,000 turns on an idle one).
        scenario = json.dumps({"tokens": TOKENS, "rate": 0})
        await runner.run("run-slices", Agent(name="fast", instructions="."), scenario, "runwatch-offline", Totals())
    finally:
        gc.enable()
        running = False
        await probing
        await client.close()
    assert sum(t.deltas for t in tokens) == TOKENS
    assert len(gaps) > 100
    # Unsliced, one 64 KiB read of the stream holds the loop for about 25 ms here; sliced, about 5.
    assert max(gaps) < 0.012, f"the loop was held for {max(gaps) * 1000:.1f} ms of CPU at a time"
