"""The agent process of the ingest part (``python -m bench.ingest.agent SPEC_JSON``): K runs reported
with ``runwatch.client`` (``AsyncRunwatch``, one client for all of them), from a process of its own.

Two modes (``spec["mode"]``):

* ``paced``: K runs of N tokens at R tokens/s each, made up here. Each token's text is its index and
  the wall-clock time of its ``run.token()`` call (``"17@1733600000.1234 "``), so a watcher in
  another process (same machine, same clock) reads each token's call-to-receipt latency, and the
  stored text says which token is missing or twice. Talks to the bench line by line
  (``bench.ingest.child``): says ``ready``; on ``register`` registers every run and says their ids;
  on ``go`` streams them, then says what it sent (with ``record``: the SHA-256 of each run's text,
  kept as it goes so that recording costs no memory), its CPU and its memory (RSS and the client's
  buffered bytes, sampled every 20 ms).
* ``openai``: K chat completion streams from an OpenAI-compatible endpoint on the openai SDK, as
  bench/peers/py_stream_consumer.py reads them; with ``report``, each run is reported and each
  chunk's text goes to ``run.token()``. The process's CPU from the first request to the last
  stream's end (every run's final flush included), the client thread's own, and what the
  ``run.token()`` calls cost the agent's thread (``Reporting``).
"""

from __future__ import annotations

import asyncio
import cProfile
import hashlib
import json
import os
import sys
import threading
import time
from typing import Any

from bench.ingest.child import heard, say
from bench.loadgen import CLOCK_TICKS, rss_bytes
from runwatch.client import AsyncRun, AsyncRunwatch

AGENT = "bench-agent"
MODEL = "runwatch-offline"


def client_thread_cpu() -> float:
    """CPU seconds of the client's own thread (``runwatch-client``: its loop and HTTP), 0 without one."""
    for thread in threading.enumerate():
        if thread.name == "runwatch-client" and thread.native_id is not None:
            fields = open(f"/proc/self/task/{thread.native_id}/stat").read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return 0.0


def buffered_bytes(rw: AsyncRunwatch) -> int:
    """What the client holds of its byte budget now (``buffer_bytes``: see runwatch.client.outbox)."""
    return rw.buffered_bytes


class Memory:
    """RSS and the client's buffered bytes, sampled every 20 ms while the runs stream."""

    def __init__(self, rw: AsyncRunwatch) -> None:
        self.rw = rw
        self.rss_start = rss_bytes(os.getpid())
        self.rss_peak = self.rss_start
        self.buffered_peak = 0

    async def sample(self) -> None:
        while True:
            self.rss_peak = max(self.rss_peak, rss_bytes(os.getpid()))
            self.buffered_peak = max(self.buffered_peak, buffered_bytes(self.rw))
            await asyncio.sleep(0.02)

    def figures(self) -> dict[str, Any]:
        return {
            "rss_start_mib": round(self.rss_start / 2**20, 2),
            "rss_peak_mib": round(self.rss_peak / 2**20, 2),
            "rss_growth_mib": round((self.rss_peak - self.rss_start) / 2**20, 2),
            "buffered_peak_bytes": self.buffered_peak,
            "buffer_bytes": self.rw._core.budget.limit,
        }


class Profiles:
    """With ``prefix``: cProfile on the agent's thread and on the client's (each profiles only the
    thread it is enabled on), written to ``PREFIX.agent.prof`` and ``PREFIX.client.prof``."""

    def __init__(self, rw: AsyncRunwatch, prefix: str | None) -> None:
        self.prefix = prefix
        self.agent, self.client = cProfile.Profile(), cProfile.Profile()
        if prefix:
            rw._core.engine.submit(self._on_client(True)).result()
            self.agent.enable()
        self.rw = rw

    async def _on_client(self, on: bool) -> None:
        if on:
            self.client.enable()
        else:
            self.client.disable()

    def dump(self) -> None:
        if self.prefix:
            self.agent.disable()
            self.rw._core.engine.submit(self._on_client(False)).result()
            self.agent.dump_stats(f"{self.prefix}.agent.prof")
            self.client.dump_stats(f"{self.prefix}.client.prof")


async def command(expected: str) -> None:
    got = (await asyncio.to_thread(heard)).get("command")
    if got != expected:
        raise SystemExit(f"expected the command {expected!r}, got {got!r}")


class Paced:
    """K runs of N tokens at R tokens/s each, their starts spread over one token's interval."""

    def __init__(self, spec: dict[str, Any], rw: AsyncRunwatch) -> None:
        self.runs, self.tokens, self.rate = spec["runs"], spec["tokens"], spec["rate"]
        self.tag = spec.get("tag", "bench")
        self.record = spec.get("record", False)
        self.rw = rw
        loop = asyncio.get_running_loop()
        self.ids: list[asyncio.Future[str]] = [loop.create_future() for _ in range(self.runs)]
        self.digests = [hashlib.sha256() for _ in range(self.runs)]
        self.go = asyncio.Event()
        self.t0 = 0.0

    async def one(self, i: int) -> int:
        """Run ``i``: registered, then (on ``go``) a step of N paced tokens; its dropped tokens."""
        run = self.rw.run(agent=AGENT, input=f"bench run {i}", external_id=f"{self.tag}-{i}", model=MODEL)
        async with run:
            self.ids[i].set_result(run.id or "")
            await self.go.wait()
            await self._stream(run, i)
        return run.dropped_tokens

    async def _stream(self, run: AsyncRun, i: int) -> None:
        run.step(MODEL)
        start = self.t0 + i / (self.runs * self.rate)
        digest = self.digests[i]
        for k in range(self.tokens):
            delay = start + k / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            text = f"{k}@{time.time():.4f} "
            run.token(text)
            if self.record:
                digest.update(text.encode())
        run.step_done({"input_tokens": 8, "output_tokens": self.tokens}, "stop")


async def paced(spec: dict[str, Any]) -> None:
    rw = AsyncRunwatch(spec["url"], spec["key"], **({"linger": spec["linger"]} if "linger" in spec else {}))
    say("ready")
    await command("register")
    scenario = Paced(spec, rw)
    tasks = [asyncio.create_task(scenario.one(i)) for i in range(scenario.runs)]
    ids = await asyncio.gather(*scenario.ids)
    say("registered", runs=ids)
    await command("go")
    memory = Memory(rw)
    sampler = asyncio.create_task(memory.sample())
    profiles = Profiles(rw, spec.get("profile"))
    cpu0, thread0, t0 = time.process_time(), client_thread_cpu(), time.monotonic()
    scenario.t0 = t0
    scenario.go.set()
    dropped = await asyncio.gather(*tasks)
    cpu, thread, elapsed = time.process_time() - cpu0, client_thread_cpu() - thread0, time.monotonic() - t0
    profiles.dump()
    sampler.cancel()
    errors = [f"{type(e).__name__}: {e}" for e in rw.errors]
    await rw.aclose()
    say(
        "sent",
        runs=ids,
        tokens=scenario.runs * scenario.tokens,
        dropped=sum(dropped),
        cpu_s=round(cpu, 3),
        client_thread_cpu_s=round(thread, 3),
        elapsed_s=round(elapsed, 3),
        errors=len(errors),
        first_errors=errors[:5],
        digests=[d.hexdigest() for d in scenario.digests] if scenario.record else None,
        **memory.figures(),
    )


class Reporting:
    """The CPU the agent's own thread spends in the client's calls (``run.token()`` …), summed call
    by call on the thread's CPU clock: with the client thread's CPU, all the client costs it."""

    def __init__(self) -> None:
        self.cpu_s = 0.0

    def token(self, run: AsyncRun, text: str) -> None:
        t = time.thread_time()
        run.token(text)
        self.cpu_s += time.thread_time() - t


async def _completion(client: Any, prompt: str, run: AsyncRun | None, calls: Reporting) -> tuple[int, float]:
    """One chat completion streamed (each chunk's text to ``run``, if any): its chunks and wall time."""
    t0 = time.monotonic()
    chunks = 0
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = None
    async with stream:
        async for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    chunks += 1
                    if run is not None:
                        calls.token(run, choice.delta.content)
            usage = chunk.usage or usage
    if run is not None and usage is not None:
        run.step_done({"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}, "stop")
    return chunks, time.monotonic() - t0


async def _reported(client: Any, rw: AsyncRunwatch, prompt: str, calls: Reporting) -> tuple[int, float]:
    async with rw.run(agent=AGENT, input=prompt, model=MODEL) as run:
        run.step(MODEL)
        return await _completion(client, prompt, run, calls)


async def openai_streams(spec: dict[str, Any]) -> None:
    from openai import AsyncOpenAI

    prompt = json.dumps({"tokens": spec["tokens"], "rate": spec["rate"]})
    rw = AsyncRunwatch(spec["url"], spec["key"]) if spec["report"] else None
    calls = Reporting()
    async with AsyncOpenAI(base_url=spec["model_url"], api_key="bench", max_retries=0) as client:
        cpu0, thread0, t0 = time.process_time(), client_thread_cpu(), time.monotonic()
        if rw is not None:
            results = await asyncio.gather(*(_reported(client, rw, prompt, calls) for _ in range(spec["runs"])))
        else:
            results = await asyncio.gather(*(_completion(client, prompt, None, calls) for _ in range(spec["runs"])))
        cpu, thread, elapsed = time.process_time() - cpu0, client_thread_cpu() - thread0, time.monotonic() - t0
    errors = 0
    if rw is not None:
        errors = len(rw.errors)
        await rw.aclose()
    say(
        "result",
        chunks=sum(r[0] for r in results),
        wall_s=[round(r[1], 3) for r in results],
        cpu_s=round(cpu, 3),
        client_thread_cpu_s=round(thread, 3),
        token_calls_cpu_s=round(calls.cpu_s, 3),
        elapsed_s=round(elapsed, 3),
        errors=errors,
    )


def main() -> None:
    spec = json.loads(sys.argv[1])
    asyncio.run(paced(spec) if spec["mode"] == "paced" else openai_streams(spec))


if __name__ == "__main__":
    main()
