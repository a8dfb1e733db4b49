"""A model-stream consumer for ``python -m bench --runs``: the bare ``openai`` Python SDK, nothing else.

K concurrent chat completion streams from one OpenAI-compatible endpoint, on the SDK's default
(httpx) transport and asyncio's default event loop, as a plain user would write it. Prints one
JSON line: CPU, chunks, each stream's TTFT and wall time. With SOCKET, it connects to that Unix
socket instead of BASE_URL's host and port (the offline model's ``RUNWATCH_MODEL_SOCKET``).

    python bench/peers/py_stream_consumer.py BASE_URL RUNS TOKENS RATE [SOCKET]
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time

from openai import DEFAULT_CONNECTION_LIMITS, AsyncOpenAI, DefaultAsyncHttpxClient


async def one(client: AsyncOpenAI, prompt: str) -> tuple[int, float, float]:
    t0 = time.monotonic()
    first, n = 0.0, 0
    stream = await client.chat.completions.create(
        model="runwatch-offline",
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    async with stream:
        async for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    n += 1
                    first = first or time.monotonic() - t0
    return n, first, time.monotonic() - t0


async def main() -> None:
    base, runs, tokens, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    prompt = json.dumps({"tokens": tokens, "rate": rate})
    http_client = None
    if len(sys.argv) > 5:  # the SDK's own httpx (httpx2 since openai 3), on the socket
        httpx = importlib.import_module(DefaultAsyncHttpxClient.__mro__[1].__module__.partition(".")[0])
        http_client = DefaultAsyncHttpxClient(
            transport=httpx.AsyncHTTPTransport(uds=sys.argv[5], limits=DEFAULT_CONNECTION_LIMITS)
        )
    async with AsyncOpenAI(base_url=base, api_key="bench", max_retries=0, http_client=http_client) as client:
        cpu0, t0 = time.process_time(), time.monotonic()
        results = await asyncio.gather(*(one(client, prompt) for _ in range(runs)))
        cpu = time.process_time() - cpu0
    out = {
        "cpu_s": cpu,
        "elapsed_s": time.monotonic() - t0,
        "chunks": sum(r[0] for r in results),
        "ttft_s": [r[1] for r in results],
        "wall_s": [r[2] for r in results],
    }
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
