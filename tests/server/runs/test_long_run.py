"""A three-million-token run at full speed: the server stays responsive and the run completes."""

from __future__ import annotations

import asyncio
import time

import pytest

TOKENS = 3_000_000


#: Tokens per streamed chunk. One per chunk would take minutes (both the offline model and the
#: runner spend tens of µs per chunk); 3 makes a million chunks, a run of some seconds that keeps
#: the 3M tokens and 18 MB of text, the output limit, coalescing and fan-out under test.
CHUNK_TOKENS = 3


@pytest.mark.timeout(300)
async def test_a_three_million_token_run_at_full_speed_keeps_health_under_a_second(make_server):
    # The answer is about 17.9 MB of text, over the 4 MiB default of one step's output.
    srv = make_server({"RUNWATCH_MAX_OUTPUT_BYTES": str(32 * 2**20)})
    feed = await srv.watcher()
    await feed.subscribe("*")
    run = await srv.start_run({"tokens": TOKENS, "rate": 0, "chunk_tokens": CHUNK_TOKENS})
    finished = asyncio.create_task(
        feed.wait_for(lambda m: m.get("run_id") == run and m.get("type") == "run.finished", timeout=300)
    )
    latencies: list[float] = []
    async with srv.client() as c:
        while not finished.done():
            started = time.monotonic()
            assert (await c.get("/api/health", timeout=5)).json()["status"] == "ok"
            latencies.append(time.monotonic() - started)
            await asyncio.wait({finished}, timeout=0.1)  # the polling interval, cut short by the run's end
    final = await finished
    await feed.close()
    assert final["status"] == "succeeded", final["error"]
    assert final["totals"]["output_tokens"] == TOKENS
    assert len(latencies) > 10
    assert max(latencies) < 1.0, f"/api/health took up to {max(latencies):.2f} s"
    assert srv.proc.poll() is None
