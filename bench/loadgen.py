"""The load generator: W watcher WebSockets following K runs (or rooms) on one server.

Runs as its own process (``python -m bench.loadgen SPEC_JSON``), pinned to the other core, and
prints one JSON result. It reads the server's CPU time and RSS from ``/proc/PID`` itself, at the
edges of the measured window: from the moment the streams are started to the moment every
(non-stalled) watcher has seen every run finish.

Watchers are ``bench.client`` connections: frames are counted and timestamped as they arrive,
inside the socket's callback, so the load generator is not the bottleneck it was with a task per
watcher. Protocols: ``runwatch`` (docs/protocol.md: runs started over REST, ``subscribe``) and ``rooms``
(bench/peers: ``join`` then ``start``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from bench.client import AUTH, Client, connect, use_token

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Tally:
    frames: int = 0
    events: int = 0
    tokens: int = 0
    finished: int = 0
    resyncs: int = 0
    #: When this watcher's first token and its last ``run.finished`` arrived (wall clock): the
    #: window tokens flowed in.
    first_token_at: float | None = None
    finished_at: float | None = None
    latencies: array = field(default_factory=lambda: array("d"))


class Event(msgspec.Struct):
    """The fields of an event (runwatch) or chunk (peers) the load generator reads; the rest is skipped."""

    type: str
    ts: float = 0.0
    deltas: int = 1


_decode = msgspec.json.Decoder(list[Event] | Event).decode

#: This process's CPU time when the first token of the run reached any watcher.
FIRST_TOKEN_CPU: float | None = None


def _first_token_cpu() -> None:
    global FIRST_TOKEN_CPU
    FIRST_TOKEN_CPU = time.process_time()


@dataclass
class Watcher:
    ws: Client
    runs: int
    stalled: bool = False
    tally: Tally = field(default_factory=Tally)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None
    cut_at: float | None = None

    def __post_init__(self) -> None:
        self.ws.closed.add_done_callback(self._closed)

    def on_message(self, data: bytes, now: float) -> None:
        """Count a frame's events and tokens; its latency is arrival minus its oldest token's publish."""
        t = self.tally
        decoded = _decode(data)
        items = decoded if isinstance(decoded, list) else (decoded,)
        t.frames += 1
        oldest = None
        for ev in items:
            kind = ev.type
            if kind == "token":
                t.events += 1
                t.tokens += ev.deltas
                if oldest is None or ev.ts < oldest:
                    oldest = ev.ts
            elif kind == "run.finished":
                t.finished += 1
                t.finished_at = now
            elif kind == "resync":
                t.resyncs += 1
                self.cut_at = self.cut_at or now
                self.done.set()
        if oldest is not None:
            t.latencies.append(now - oldest)
            if t.first_token_at is None:
                t.first_token_at = now
                if FIRST_TOKEN_CPU is None:
                    _first_token_cpu()
        if t.finished >= self.runs:
            self.done.set()

    def follow(self) -> None:
        """Start counting what arrives (and resume reading, for a stalled watcher)."""
        self.ws.on_message = self.on_message
        if self.stalled:
            self.ws.resume_reading()

    def _closed(self, _: object) -> None:
        self.close_code = self.ws.close_code
        self.cut_at = self.cut_at or time.time()
        self.done.set()


async def _connect(url: str, stalled: bool) -> Client:
    ws = await connect(url, rcvbuf=4096 if stalled else None)
    if stalled:
        ws.pause_reading()
    return ws


async def _open_all(url: str, count: int, stalled: set[int]) -> list[Any]:
    sockets: list[Any] = [None] * count
    limit = asyncio.Semaphore(100)

    async def one(i: int) -> None:
        async with limit:
            sockets[i] = await _connect(url, i in stalled)

    await asyncio.gather(*(one(i) for i in range(count)))
    return sockets


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run_stream(spec: dict[str, Any]) -> dict[str, Any]:
    """Deliver K runs of N tokens to W watchers; measure server CPU, frames, latency, RSS."""
    pid, watchers_n, runs_n, tokens = spec["server_pid"], spec["watchers"], spec["runs"], spec["tokens"]
    stall_n = int(watchers_n * spec.get("stall_fraction", 0.0))
    stalled = set(range(stall_n))
    # Several instances (the Redis broker): watchers are spread over them in turn, and each one's
    # CPU is measured; runs are started through the first.
    urls = spec.get("ws_urls") or [spec["ws_url"]]
    pids = spec.get("server_pids") or [pid]
    sockets = []
    for n, url in enumerate(urls):
        share = len(range(n, watchers_n, len(urls)))
        sockets += await _open_all(url, share, {i for i in stalled if i < share})
    instance_of = [n for n, url in enumerate(urls) for _ in range(len(range(n, watchers_n, len(urls))))]
    watchers = [Watcher(ws, runs_n, stalled=i in stalled) for i, ws in enumerate(sockets)]

    probe: asyncio.Task[list[float]] | None = None
    if spec["protocol"] == "runwatch":
        async with httpx.AsyncClient(base_url=spec["http_url"], timeout=30, headers=AUTH) as c:
            # An unrelated, finished run whose history is read over REST while the others stream.
            r = await c.post("/api/runs", json={"agent": "demo", "input": json.dumps({"tokens": 50})})
            other = r.json()["id"]
            while (await c.get(f"/api/runs/{other}")).json()["status"] != "succeeded":  # noqa: ASYNC110 (polling a server)
                await asyncio.sleep(0.05)
            # The simulated time to first token gives every watcher time to subscribe before tokens flow.
            scenario = {
                "tokens": tokens,
                "rate": spec.get("rate", 0),
                "ttft": spec.get("setup_seconds", 3),
                "token_chars": spec.get("token_chars", 0),
            }
            runs = []
            for _ in range(runs_n):
                r = await c.post("/api/runs", json={"agent": "demo", "input": json.dumps(scenario)})
                runs.append(r.json()["id"])
        for w in watchers:
            for run in runs:
                w.ws.send(json.dumps({"type": "subscribe", "run": run, "after": 0}))
        start_streams = None  # the runs start streaming by themselves after their setup wait
        probe = asyncio.create_task(_probe_reads(spec["http_url"], other))
    else:
        runs = [f"room{i}" for i in range(runs_n)]
        for w in watchers:
            for room in runs:
                w.ws.send(json.dumps({"type": "join", "room": room}))
        for w in watchers:  # every join acknowledged before anything streams
            if not w.stalled:
                for _ in runs:
                    await w.ws.recv()

        async def start_streams() -> None:
            for room in runs:
                watchers[-1].ws.send(json.dumps({"type": "start", "room": room, "chunks": tokens}))

    for w in watchers:
        if not w.stalled:
            w.follow()
    cpus0 = [cpu_seconds(p) for p in pids]
    cpu0, t0, rss0 = sum(cpus0), time.monotonic(), rss_bytes(pid)
    own0 = time.process_time()
    peak = rss0
    if start_streams is not None:
        await start_streams()
    fast = [w for w in watchers if not w.stalled]
    deadline = t0 + spec.get("timeout", 600)
    while not all(w.done.is_set() for w in fast):
        peak = max(peak, rss_bytes(pid))
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    cpus1 = [cpu_seconds(p) for p in pids]
    cpu1, t1 = sum(cpus1), time.monotonic()
    own = time.process_time() - own0
    reads: list[float] = []
    if probe is not None:
        probe.cancel()
        probed = (await asyncio.gather(probe, return_exceptions=True))[0]
        # Only the reads made while the runs streamed (not those during their set-up wait).
        flowing = min((w.tally.first_token_at for w in fast if w.tally.first_token_at), default=None)
        if isinstance(probed, list) and flowing is not None:
            reads = [took for started, took in probed if started >= flowing]
    peak = max(peak, rss_bytes(pid))

    stalled_outcome = {}
    if stalled:
        # Stay stalled a while longer, past the server's send timeout, before reading again.
        hold_until = time.monotonic() + spec.get("stall_hold_seconds", 0)
        while time.monotonic() < hold_until:
            peak = max(peak, rss_bytes(pid))
            await asyncio.sleep(0.25)
        for w in watchers:
            if w.stalled:
                w.follow()
        slow = [w for w in watchers if w.stalled]
        await asyncio.wait([asyncio.create_task(w.done.wait()) for w in slow], timeout=spec.get("stall_grace", 30))
        stalled_outcome = {
            "stalled": len(slow),
            "resynced": sum(1 for w in slow if w.tally.resyncs),
            "completed_anyway": sum(1 for w in slow if w.tally.finished >= runs_n and not w.tally.resyncs),
            # 1013 when the close frame got through; 1006 when the full window kept it out.
            "close_codes": {str(c): sum(1 for w in slow if w.close_code == c) for c in {w.close_code for w in slow}},
        }
    await asyncio.gather(*(w.ws.close() for w in watchers), return_exceptions=True)

    tallies = [w.tally for w in fast]
    latencies = [x for t in tallies for x in t.latencies]
    delivered = sum(t.tokens for t in tallies)
    frames = sum(t.frames for t in tallies)
    cpu = cpu1 - cpu0
    per_instance = []
    for n in range(len(pids)):
        got = sum(w.tally.tokens for w, i in zip(watchers, instance_of, strict=True) if i == n and not w.stalled)
        spent = cpus1[n] - cpus0[n]
        per_instance.append(
            {
                "cpu_s": round(spent, 3),
                "delivered_tokens": got,
                "cpu_us_per_token": round(spent * 1e6 / got, 4) if got else None,
            }
        )
    return {
        **({"instances": per_instance} if len(pids) > 1 else {}),
        "watchers": watchers_n,
        "runs": runs_n,
        "tokens": tokens,
        "elapsed_s": round(t1 - t0, 3),
        # From the first token any fast watcher got to the last run.finished: the window tokens flowed in
        # (``elapsed_s`` also holds a runwatch run's silent set-up wait).
        "streaming_s": round(max(t.finished_at or 0 for t in tallies) - min(firsts), 3)
        if (firsts := [t.first_token_at for t in tallies if t.first_token_at])
        else None,
        "complete": all(w.tally.finished >= runs_n for w in fast),
        "server_cpu_s": round(cpu, 3),
        "loadgen_cpu_s": round(own, 3),
        "loadgen_streaming_cpu_s": round(own0 + own - FIRST_TOKEN_CPU, 3) if FIRST_TOKEN_CPU is not None else None,
        "delivered_tokens": delivered,
        "frames": frames,
        "events": sum(t.events for t in tallies),
        "cpu_us_per_token": round(cpu * 1e6 / delivered, 4) if delivered else None,
        "cpu_us_per_frame": round(cpu * 1e6 / frames, 3) if frames else None,
        "latency_p50_ms": round(1000 * _percentile(latencies, 0.5), 2) if latencies else None,
        "latency_p99_ms": round(1000 * _percentile(latencies, 0.99), 2) if latencies else None,
        "rss_start_mib": round(rss0 / 2**20, 1),
        "rss_peak_mib": round(peak / 2**20, 1),
        **({"stall": stalled_outcome} if stalled_outcome else {}),
        **(
            {
                "rest_reads": len(reads),
                "rest_p50_ms": round(1000 * _percentile(reads, 0.5), 2),
                "rest_p99_ms": round(1000 * _percentile(reads, 0.99), 2),
            }
            if reads
            else {}
        ),
    }


async def _probe_reads(url: str, run: str) -> list[tuple[float, float]]:
    """Read another run's events over REST every 10 ms; returns (wall-clock start, latency) of each.

    Ends when cancelled; the reads made so far are returned (the caller cancels it)."""
    took: list[tuple[float, float]] = []
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=AUTH) as c:
        try:
            while True:
                started, t = time.time(), time.perf_counter()
                await c.get(f"/api/runs/{run}/events", params={"limit": 1000})
                took.append((started, time.perf_counter() - t))
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            return took


async def run_idle(spec: dict[str, Any]) -> dict[str, Any]:
    """Server RSS per idle connection: RSS after opening W connections minus RSS before, over W."""
    pid = spec["server_pid"]
    before = rss_bytes(pid)
    sockets = await _open_all(spec["ws_url"], spec["watchers"], set())
    if spec["protocol"] == "rooms":
        for ws in sockets:
            ws.send(json.dumps({"type": "join", "room": "idle"}))
    await asyncio.gather(*(ws.recv() for ws in sockets))  # every connection answered (hello/ack), so set up
    await asyncio.sleep(1.0)  # let allocations settle before reading RSS
    after = rss_bytes(pid)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {
        "watchers": spec["watchers"],
        "rss_before_mib": round(before / 2**20, 1),
        "rss_after_mib": round(after / 2**20, 1),
        "kib_per_connection": round((after - before) / 1024 / spec["watchers"], 2),
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    use_token(spec.get("token"))
    runner = run_idle if spec.get("mode") == "idle" else run_stream
    result = asyncio.run(runner(spec))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
