"""Threads: runs that continue one conversation, each seeing what the earlier ones said and did.

A thread is its runs, in the order they were admitted; there is nothing else to store. A run's
model sees the thread's earlier runs rebuilt from their stored events — each one's input, the
answers, tool calls and results, and people's messages — then its own input. Only one run of a
thread is active at a time: a run admitted while another is (``"if_busy": "queue"`` or
``"interrupt"``) waits, queued, for those before it to finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from runwatch.agents.events import Published, decode
from runwatch.agents.resume import rebuild
from runwatch.agents.store import RunSummary, Store

#: Earlier runs a thread's run sees (the most recent ones): a long thread must not grow a
#: model's context, or the work of rebuilding it, without end.
MAX_THREAD_RUNS = 50
#: How often a run waiting for its turn looks whether the runs before it finished.
TURN_POLL_SECONDS = 0.2

History = Callable[[str], Awaitable[list[Published]]]


def turns(history: Sequence[Published]) -> list[dict[str, Any]]:
    """One finished run as conversation turns: its input, then what happened. Tool calls it never
    finished get a result saying so (a model must see a result for every call)."""
    if not history:
        return []
    first = decode(history[0].data) if history[0].event is None else history[0].event
    out: list[dict[str, Any]] = [{"role": "user", "content": getattr(first, "input", "")}]
    resumed = rebuild(history)
    out += resumed.messages
    for call in resumed.pending:
        out.append(
            {
                "role": "tool",
                "tool_call_id": call.id,
                "content": msgspec.json.encode({"error": "not made: the run ended first"}).decode(),
            }
        )
    return out


def earlier(runs: Sequence[RunSummary], run_id: str) -> list[RunSummary]:
    """The runs of a thread admitted before ``run_id`` (all of them if it is not among them)."""
    ids = [r.id for r in runs]
    return list(runs[: ids.index(run_id)]) if run_id in ids else list(runs)


async def wait_for_turn(store: Store, thread: str, run_id: str) -> None:
    """Return once every run of ``thread`` admitted before ``run_id`` has finished."""
    while any(not r.status.finished for r in earlier(await store.thread_runs(thread), run_id)):  # noqa: ASYNC110 -- across instances: the store is what tells
        await asyncio.sleep(TURN_POLL_SECONDS)


async def context(store: Store, history: History, thread: str, run_id: str) -> list[dict[str, Any]]:
    """The turns of the thread's runs before ``run_id`` (the last ``MAX_THREAD_RUNS``), in order."""
    out: list[dict[str, Any]] = []
    for run in earlier(await store.thread_runs(thread, MAX_THREAD_RUNS + 1), run_id)[-MAX_THREAD_RUNS:]:
        out += turns(await history(run.id))
    return out
