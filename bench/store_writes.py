"""``python -m bench.store_writes [RUNS] [TOKENS]``: the SQLite writer on whole runs, not just tokens.

Each run is 10 lifecycle events (queued, started, two steps, a tool call, finished) and TOKENS tokens,
its answer kept for search as its supervisor keeps it; appended and flushed 100 runs at a time, in
this process. Prints events per second and the process CPU per event. Run it from two checkouts (or
before and after a change) to compare: the lifecycle rows, the search index and the answer all cost
per run, tokens per event.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path


async def measure(runs: int, tokens: int) -> tuple[float, float]:
    from runwatch.agents.events import (
        Published,
        RunFinished,
        RunQueued,
        RunStarted,
        StepFinished,
        StepStarted,
        Token,
        ToolFinished,
        ToolStarted,
        Totals,
        Usage,
        encode,
    )
    from runwatch.agents.store import SQLiteStore

    with tempfile.TemporaryDirectory(prefix="runwatch-bench-") as folder:
        store = SQLiteStore(Path(folder) / "writes.sqlite3")
        await store.open()
        started, cpu, count = time.perf_counter(), time.process_time(), 0
        for r in range(runs):
            rid = f"{r:021x}"
            events = [
                RunQueued(run_id=rid, agent="demo", input=f"please summarise report number {r}", model="gpt-4o"),
                RunStarted(run_id=rid, agent="demo"),
                StepStarted(run_id=rid, index=0, model="gpt-4o"),
                ToolStarted(run_id=rid, call_id="c", tool="wait", arguments={}),
                ToolFinished(run_id=rid, call_id="c", tool="wait"),
                StepFinished(run_id=rid, index=0, finish_reason="tool_calls", usage=Usage(output_tokens=9), cost=0.001),
                StepStarted(run_id=rid, index=1, model="gpt-4o"),
                *(Token(run_id=rid, text=f"word{i} ") for i in range(tokens)),
                StepFinished(run_id=rid, index=1, finish_reason="stop", usage=Usage(output_tokens=tokens), cost=0.001),
                RunFinished(run_id=rid, status="succeeded", totals=Totals()),
            ]
            if hasattr(store, "keep_answer"):
                store.keep_answer(rid, "".join(e.text for e in events if isinstance(e, Token)))
            for seq, event in enumerate(events, 1):
                event.seq = seq
                store.append(Published(rid, seq, type(event).__struct_config__.tag, encode(event), event))
                count += 1
            if r % 100 == 99:
                await store.flush()
        await store.flush()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        await store.close()
    return count / wall, cpu * 1e6 / count


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    rate, cpu = asyncio.run(measure(runs, tokens))
    sys.stdout.write(f"{runs} runs x {tokens + 10} events: {rate:,.0f} events/s, {cpu:.2f} CPU us per event\n")


if __name__ == "__main__":
    main()
