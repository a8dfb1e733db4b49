"""The driver of the model-stream benchmark for runwatch (``python -m bench.rundriver SPEC_JSON``).

Runs as its own process on the load core. It starts K runs of a paced scenario over REST (the
model server streams them to runwatch), optionally has one watcher follow each run over the
WebSocket, waits on the runs feed until every run has finished, and reads runwatch's CPU time from
``/proc`` at the edges of that window. Afterwards (outside the window) it reads each run's events
over REST for its timings. Prints one JSON result; see bench/README.md for the measures.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx
import msgspec

from bench.client import AUTH, connect, use_token
from bench.loadgen import Watcher, _open_all, _percentile, cpu_seconds


class FeedEvent(msgspec.Struct):
    type: str
    run_id: str = ""
    status: str = ""


_decode_feed = msgspec.json.Decoder(list[FeedEvent] | FeedEvent).decode


def _ms(values: list[float], q: float) -> float | None:
    v = _percentile(values, q)
    return round(1000 * v, 1) if v is not None else None


async def _events(c: httpx.AsyncClient, run: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    page = {"more": True, "next_after": 0}
    while page["more"]:
        r = await c.get(f"/api/runs/{run}/events", params={"after": page["next_after"], "limit": 5000})
        r.raise_for_status()
        page = r.json()
        events += page["events"]
    return events


async def drive(spec: dict[str, Any]) -> dict[str, Any]:
    pid, runs_n, tokens, rate = spec["server_pid"], spec["runs"], spec["tokens"], spec["rate"]
    scenario = json.dumps({"tokens": tokens, "rate": rate})
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=spec["http_url"], timeout=60, limits=limits, headers=AUTH) as c:
        page = (await c.get("/api/runs", params={"limit": 1})).json()
        finished: dict[str, str] = {}
        all_done = asyncio.Event()
        ours: set[str] = set()

        def on_feed(data: bytes, now: float) -> None:
            decoded = _decode_feed(data)
            for ev in decoded if isinstance(decoded, list) else (decoded,):
                if ev.type == "run.finished":
                    finished[ev.run_id] = ev.status
                    if len(ours) == runs_n and ours <= finished.keys():
                        all_done.set()

        feed = await connect(spec["ws_url"])
        await feed.recv()  # hello
        feed.on_message = on_feed
        feed.send(json.dumps({"type": "subscribe", "run": "*", "after": page["feed"], "epoch": page["feed_epoch"]}))
        sockets = await _open_all(spec["ws_url"], runs_n, set()) if spec.get("watch") else []
        for ws in sockets:
            await ws.recv()  # hello
        watchers = [Watcher(ws, 1) for ws in sockets]

        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        gate = asyncio.Semaphore(64)

        async def start(i: int) -> str:
            async with gate:
                r = await c.post("/api/runs", json={"agent": "demo", "input": scenario})
            r.raise_for_status()
            run = r.json()["id"]
            ours.add(run)
            if watchers:
                watchers[i].follow()
                watchers[i].ws.send(json.dumps({"type": "subscribe", "run": run, "after": 0}))
            return run

        runs = await asyncio.gather(*(start(i) for i in range(runs_n)))
        if ours <= finished.keys():
            all_done.set()
        await asyncio.wait_for(all_done.wait(), spec.get("timeout", 600))
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        if watchers:
            await asyncio.wait_for(asyncio.gather(*(w.done.wait() for w in watchers)), 60)
        await asyncio.gather(feed.close(), *(ws.close() for ws in sockets), return_exceptions=True)

        walls, ttfts, to_first = [], [], []
        for run in runs:
            events = await _events(c, run)
            queued = next(e["ts"] for e in events if e["type"] == "run.queued")
            first = next((e["ts"] for e in events if e["type"] == "token"), None)
            step = next(e for e in events if e["type"] == "step.finished")
            walls.append(step["duration"])
            ttfts.append(step["ttft"] or 0.0)
            if first is not None:
                to_first.append(first - queued)
    nominal = tokens / rate if rate else 0.0
    chunks = runs_n * tokens
    cpu = cpu1 - cpu0
    latencies = [x for w in watchers for x in w.tally.latencies]
    return {
        "runs": runs_n,
        "tokens": tokens,
        "rate": rate,
        "succeeded": sum(1 for r in runs if finished.get(r) == "succeeded"),
        "elapsed_s": round(t1 - t0, 3),
        "cpu_s": round(cpu, 3),
        "chunks": chunks,
        "cpu_us_per_chunk": round(cpu * 1e6 / chunks, 1),
        "wall_over_nominal_max": round(max(walls) / nominal, 3) if nominal else None,
        "wall_over_nominal_p50": round(_percentile(walls, 0.5) / nominal, 3) if nominal else None,
        "ttft_p50_ms": _ms(ttfts, 0.5),
        "ttft_p99_ms": _ms(ttfts, 0.99),
        "start_to_first_token_p50_ms": _ms(to_first, 0.5),
        "start_to_first_token_p99_ms": _ms(to_first, 0.99),
        **(
            {
                "watch_frames": sum(w.tally.frames for w in watchers),
                "watch_p50_ms": _ms(latencies, 0.5),
                "watch_p99_ms": _ms(latencies, 0.99),
            }
            if watchers
            else {}
        ),
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    use_token(spec.get("token"))
    sys.stdout.write(json.dumps(asyncio.run(drive(spec))) + "\n")


if __name__ == "__main__":
    main()
