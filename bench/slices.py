"""``python -m bench --only slices``: how long one runner reading a full-speed model stream holds its
event loop at a time, parsing in 2 ms slices (the default) and unsliced.

A figure tests once asserted (tests/server/runs/test_runner.py: under 12 ms of CPU; the test now
asserts the slicing itself). The runner (the agent loop alone: no bus, no watchers) reads 20,000
tokens at full speed from the offline model, a ``runwatch serve`` of its own on the load core; the
measuring process runs on the server core. A probe task counts the CPU time the loop's thread spends
away from it between its turns — time the OS took the thread off the core is not counted — with the
collector off (a collection of the process's heap is not the runner's doing). Reported: the longest
and the p99 hold per run, medians over the repeats. Unsliced, one 64 KiB read is parsed in one go.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import sys
import time
from typing import Any

from bench import servers
from bench.stats import median_of

TOKENS = 20_000
#: The runner's time slice in each mode: its default, and one no stream lasts.
MODES = {"sliced": None, "unsliced": math.inf}
#: Seconds the loop is kept busy once, at the first token: the socket fills with buffered tokens.
STALL = 0.3


async def _hold(model_url: str, time_slice: float | None) -> dict[str, Any]:
    from openai import AsyncOpenAI

    from runwatch.agents.events import Token, Totals
    from runwatch.agents.loop.agent import Agent
    from runwatch.agents.loop.runner import Runner

    client = AsyncOpenAI(base_url=model_url, api_key="bench", max_retries=0)

    stalled = False

    async def emit(event: Any) -> None:
        nonlocal stalled
        if isinstance(event, Token) and not stalled:  # the loop busy elsewhere once: the stream piles up
            stalled = True
            time.sleep(STALL)  # noqa: ASYNC251 (blocking the loop is the point)

    runner = Runner(client, emit, **({} if time_slice is None else {"time_slice": time_slice}))
    gaps: list[float] = []
    running = True

    async def probe() -> None:
        while running:
            before = time.thread_time()
            await asyncio.sleep(0)
            gaps.append(time.thread_time() - before)

    agent = Agent(name="fast", instructions=".")
    await runner.run("bench-warm-up", agent, json.dumps({"tokens": 100}), "runwatch-offline", Totals())
    stalled = False  # (the warm-up's first token stalled the loop: this run's will again)
    probing = asyncio.create_task(probe())
    gc.disable()
    try:
        scenario = json.dumps({"tokens": TOKENS, "rate": 0})
        await runner.run("bench-slices", agent, scenario, "runwatch-offline", Totals())
    finally:
        gc.enable()
        running = False
        await probing
        await client.close()
    ordered = sorted(gaps)
    return {
        "max_ms": round(1000 * ordered[-1], 2),
        "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 2),
        "turns": len(gaps),
    }


def measure(model: servers.Running, mode: str) -> dict[str, Any]:
    """One run of the runner in ``mode``, in a process of its own on the server core."""
    spec = {"model_url": f"{model.http_url}/v1", "mode": mode}
    argv = [sys.executable, "-m", "bench.slices", json.dumps(spec)]
    return servers.run_json("slices", servers.SERVER_CORE, argv, 120)


def run_all(repeats: int, progress: Any) -> dict[str, Any]:
    model = servers.model_server()
    try:
        res: dict[str, Any] = {}
        for mode in MODES:
            results = []
            for i in range(repeats):
                progress(f"slices {mode}: {TOKENS} tokens at full speed ({i + 1}/{repeats})")
                results.append(measure(model, mode))
            res[mode] = {"runs": results, **{k: median_of(results, k) for k in ("max_ms", "p99_ms", "turns")}}
        return res
    finally:
        model.stop()


def report(res: dict[str, Any]) -> str:
    lines = [
        f"### The event loop held by one runner reading {TOKENS:,} tokens at full speed (CPU ms, medians)",
        "",
        "| runner | longest hold | p99 hold | turns of the loop |",
        "|---|---:|---:|---:|",
    ]
    for mode, row in res.items():
        lines.append(f"| {mode} | {row['max_ms']} | {row['p99_ms']} | {row['turns']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(_hold(spec["model_url"], MODES[spec["mode"]]))))
