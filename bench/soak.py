"""``python -m bench.soak --minutes 10``: does the server give its memory back after a long, heavy load?

Starts runwatch, with the offline model in a process of its own as ``python -m bench`` does, and
opens 50 WebSocket watchers. For ``--minutes`` it starts batches of runs whose tokens are 16 KiB
each, and every watcher follows every run to its end. The server's RSS (``/proc/PID/status``) is
printed every few seconds. Once the last batch is done it waits past the bus's retention of
finished runs' logs, then prints the final RSS beside the baseline taken before the first run.
Exit code 1 if the final RSS is more than ``RSS_BOUND_MIB`` above the baseline, or if a run failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field

import httpx
import msgspec

from bench import servers
from bench.client import AUTH, Client, connect, use_token
from bench.loadgen import rss_bytes

WATCHERS = 50
TOKEN_CHARS = 16_384
RUNS_PER_BATCH = 4
#: 200 tokens of 16 KiB: 3.1 MiB of text per run, under the 4 MiB default of max_output_bytes.
TOKENS_PER_RUN = 200
SAMPLE_SECONDS = 5.0
#: The bus keeps a finished run's log in memory for 60 s (``MemoryBus.retain_seconds``); the final
#: RSS is read after that, so what is left above the baseline is not runs the server should still hold.
SETTLE_SECONDS = 75.0
#: How far above the baseline the final RSS may stay. What remains once every run's log is gone is
#: allocator slack (freed memory glibc keeps for reuse) plus warm-up (SQLite's page cache, code
#: paths first taken); one retained 3 MiB run log per batch would pass this bound within a minute.
RSS_BOUND_MIB = 64
BATCH_TIMEOUT = 300.0


class _Event(msgspec.Struct):
    """The fields of an event the soak reads; the rest of each 16 KiB event is skipped."""

    type: str
    run_id: str = ""
    status: str = ""


_decode = msgspec.json.Decoder(list[_Event] | _Event).decode


@dataclass
class Follower:
    """One watcher: counts the runs it has seen finish, and any that did not succeed."""

    ws: Client
    finished: int = 0
    failed: list[str] = field(default_factory=list)
    received_bytes: int = 0

    def on_message(self, data: bytes, now: float) -> None:
        self.received_bytes += len(data)
        decoded = _decode(data)
        for event in decoded if isinstance(decoded, list) else (decoded,):
            if event.type == "run.finished":
                self.finished += 1
                if event.status != "succeeded":
                    self.failed.append(f"{event.run_id}: {event.status}")


def mib(n: int) -> float:
    return n / 2**20


async def run_batch(http: httpx.AsyncClient, followers: list[Follower], expected: int) -> list[str]:
    """Start a batch of runs, have every watcher follow each to its end, then unsubscribe."""
    scenario = json.dumps({"tokens": TOKENS_PER_RUN, "rate": 0, "token_chars": TOKEN_CHARS})
    runs = []
    for _ in range(RUNS_PER_BATCH):
        r = await http.post("/api/runs", json={"agent": "demo", "input": scenario})
        r.raise_for_status()
        runs.append(r.json()["id"])
    for f in followers:
        for run in runs:
            f.ws.send(json.dumps({"type": "subscribe", "run": run, "after": 0}))
    deadline = time.monotonic() + BATCH_TIMEOUT
    while min(f.finished for f in followers) < expected:
        closed = [f.ws.close_code for f in followers if f.ws.closed.done()]
        if closed:
            raise RuntimeError(f"{len(closed)} watchers were closed (codes {sorted(set(closed))})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"a batch did not finish within {BATCH_TIMEOUT:g} s")
        await asyncio.sleep(0.1)  # polling counters kept by the socket callbacks
    for f in followers:
        for run in runs:
            f.ws.send(json.dumps({"type": "unsubscribe", "run": run}))
    return runs


async def sample_rss(pid: int, started: float, samples: list[tuple[float, int]], state: dict[str, int]) -> None:
    while True:
        rss = rss_bytes(pid)
        at = time.monotonic() - started
        samples.append((at, rss))
        print(f"{at:7.1f} s  rss {mib(rss):7.1f} MiB  runs {state['runs']}", flush=True)
        await asyncio.sleep(SAMPLE_SECONDS)


def memory_map(pid: int) -> dict[str, float]:
    """The process's resident memory by kind of mapping (``/proc/PID/smaps``), in MiB: glibc's main
    heap, its threads' arenas (anonymous mappings in 64 MiB reservations), other anonymous memory
    (Python's own arenas, large blocks), and files (code, the SQLite database and its WAL)."""
    kinds = {"heap": 0, "thread arenas": 0, "other anonymous": 0, "files": 0}
    kind, start, end = "", 0, 0
    for line in open(f"/proc/{pid}/smaps"):
        head = line.split()
        if "-" in head[0] and not head[0].endswith(":"):
            start, end = (int(x, 16) for x in head[0].split("-"))
            name = head[5] if len(head) > 5 else ""
            if name == "[heap]":
                kind = "heap"
            elif name.startswith("/"):
                kind = "files"
            elif start % (64 << 20) == 0 or (end - start) % (64 << 20) == 0:
                kind = "thread arenas"
            else:
                kind = "other anonymous"
        elif head[0] == "Rss:":
            kinds[kind] += int(head[1]) * 1024
    return {k: round(mib(v), 1) for k, v in kinds.items()}


async def soak(server: servers.Running, minutes: float) -> int:
    use_token(server.token)
    sockets = await asyncio.gather(*(connect(server.ws_url) for _ in range(WATCHERS)))
    await asyncio.gather(*(ws.recv() for ws in sockets))  # every watcher has its hello
    followers = [Follower(ws) for ws in sockets]
    for f in followers:
        f.ws.on_message = f.on_message
    await asyncio.sleep(2.0)  # let the connections' allocations settle before the baseline
    baseline = rss_bytes(server.pid)
    print(f"baseline rss {mib(baseline):.1f} MiB with {WATCHERS} watchers connected, before any run", flush=True)
    print(f"baseline by kind (MiB): {memory_map(server.pid)}", flush=True)
    started = time.monotonic()
    samples: list[tuple[float, int]] = []
    state = {"runs": 0}
    sampler = asyncio.create_task(sample_rss(server.pid, started, samples, state))
    batches = 0
    try:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=30, headers=AUTH) as http:
            while time.monotonic() - started < minutes * 60:
                batches += 1
                await run_batch(http, followers, batches * RUNS_PER_BATCH)
                state["runs"] += RUNS_PER_BATCH
        load_seconds = time.monotonic() - started
        print(f"runs done: {state['runs']} in {batches} batches, {load_seconds:.0f} s; waiting {SETTLE_SECONDS:g} s")
        await asyncio.sleep(SETTLE_SECONDS)
    finally:
        sampler.cancel()
    final = rss_bytes(server.pid)
    print(f"final by kind (MiB): {memory_map(server.pid)}")
    await asyncio.gather(*(f.ws.close() for f in followers), return_exceptions=True)
    failed = [x for f in followers for x in f.failed]
    peak = max(rss for _, rss in samples)
    delivered = sum(f.received_bytes for f in followers)
    above = mib(final - baseline)
    print(f"delivered {mib(delivered):.0f} MiB to {WATCHERS} watchers")
    print(f"baseline rss {mib(baseline):.1f} MiB; peak {mib(peak):.1f} MiB; final {mib(final):.1f} MiB")
    print(f"final - baseline = {above:+.1f} MiB (bound {RSS_BOUND_MIB} MiB)")
    if failed:
        print(f"FAIL: {len(failed)} run endings were not 'succeeded', e.g. {failed[:3]}")
        return 1
    if above > RSS_BOUND_MIB:
        print("FAIL: the server's memory did not come back within the bound")
        return 1
    print("OK")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Batches of runs with 16 KiB tokens, 50 watchers; does the server's RSS come back?",
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to keep starting runs (default 10)")
    args = parser.parse_args()
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(servers.LOAD_CORE)})  # the server under test has the other core
    model = servers.model_server()
    server = servers.runwatch(model, coalesce_ms=25)
    print(
        f"runwatch pid {server.pid} on {server.http_url}; {WATCHERS} watchers, {RUNS_PER_BATCH} runs per batch, "
        f"{TOKENS_PER_RUN} tokens of {TOKEN_CHARS} characters per run",
        flush=True,
    )
    try:
        return asyncio.run(soak(server, args.minutes))
    finally:
        server.stop()
        model.stop()


if __name__ == "__main__":
    sys.exit(main())
