"""The watchers of the ingest part (``python -m bench.ingest.watch SPEC_JSON``): one WebSocket per
external run, in a process of its own.

Opens its sockets and says ``connected``; reads the runs' ids (``{"runs": [...]}``) and subscribes
each socket to its run from the start, and says ``ready`` once every subscription is acknowledged;
then says ``done`` when every run has finished, with what arrived. Each token of a paced agent
(bench/ingest/agent.py) carries the time of its ``run.token()`` call: its latency is the arrival
of the frame that holds it (timestamped in the socket's callback, ``bench.client``) minus that.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from array import array
from typing import Any

import msgspec

from bench.client import Client, use_token
from bench.ingest.child import heard, say
from bench.loadgen import _open_all, _percentile


class Frame(msgspec.Struct):
    """The fields of a server message the watchers read; the rest is skipped."""

    type: str
    text: str = ""
    status: str = ""


_decode = msgspec.json.Decoder(list[Frame] | Frame).decode


class Follower:
    """One socket following one run: its tokens' latencies, until its ``run.finished``."""

    def __init__(self, ws: Client, latencies: array) -> None:
        self.ws = ws
        self.latencies = latencies
        self.tokens = 0
        self.frames = 0
        self.status = ""
        self.other: list[str] = []
        self.acked = asyncio.Event()
        self.done = asyncio.Event()
        ws.closed.add_done_callback(lambda _: self.done.set())

    def on_message(self, data: bytes, now: float) -> None:
        decoded = _decode(data)
        self.frames += 1
        for frame in decoded if isinstance(decoded, list) else (decoded,):
            kind = frame.type
            if kind == "token":
                for token in frame.text.split():
                    self.latencies.append(now - float(token.partition("@")[2]))
                    self.tokens += 1
            elif kind == "run.finished":
                self.status = frame.status
                self.done.set()
            elif kind == "ack":
                self.acked.set()
            elif kind in ("resync", "error"):
                self.other.append(data.decode()[:200])
                self.acked.set()
                self.done.set()


def _ms(values: array, q: float) -> float | None:
    v = _percentile(list(values), q)
    return round(1000 * v, 1) if v is not None else None


async def main(spec: dict[str, Any]) -> None:
    use_token(spec["token"])
    sockets = await _open_all(spec["ws_url"], spec["runs"], set())
    for ws in sockets:
        await ws.recv()  # hello
    say("connected")
    runs = (await asyncio.to_thread(heard))["runs"]
    latencies = array("d")
    followers = [Follower(ws, latencies) for ws in sockets]
    for follower, run in zip(followers, runs, strict=True):
        follower.ws.on_message = follower.on_message
        follower.ws.send(json.dumps({"type": "subscribe", "run": run, "after": 0}))
    await asyncio.wait_for(asyncio.gather(*(f.acked.wait() for f in followers)), 60)
    say("ready")
    t0 = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(f.done.wait() for f in followers)), spec.get("timeout", 600))
    say(
        "done",
        elapsed_s=round(time.monotonic() - t0, 3),
        tokens=sum(f.tokens for f in followers),
        frames=sum(f.frames for f in followers),
        succeeded=sum(1 for f in followers if f.status == "succeeded"),
        p50_ms=_ms(latencies, 0.5),
        p99_ms=_ms(latencies, 0.99),
        max_ms=_ms(latencies, 1.0),
        problems=[p for f in followers for p in f.other][:5],
    )
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
