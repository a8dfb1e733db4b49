"""No tool can freeze the server or break a run: bounded arithmetic, results that cannot be sent,
and file tools that never follow a link out of their folder."""

from __future__ import annotations

import asyncio
import time


def _finished_tools(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] == "tool.finished"]


async def test_a_runaway_power_is_a_tool_error_at_once_while_health_stays_fast(server):
    w = await server.watcher()
    run = await server.start_run('call calculator {"expression": "((9**99)**99)**99"}')
    await w.subscribe(run)
    finished = asyncio.create_task(w.until_finished(run, timeout=30))
    latencies: list[float] = []
    async with server.client() as c:
        while not finished.done():
            started = time.monotonic()
            assert (await c.get("/api/health", timeout=5)).status_code == 200
            latencies.append(time.monotonic() - started)
            await asyncio.wait({finished}, timeout=0.05)  # a polling interval, ended early by the run's end
    events = await finished
    await w.close()
    call = _finished_tools(events)[0]
    assert call["tool"] == "calculator" and "too large" in call["error"]
    assert call["duration"] < 0.5
    assert max(latencies) < 1.0, f"/api/health took {max(latencies):.2f} s"
    assert events[-1]["status"] == "succeeded"
