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
from typing import Any, Literal

import msgspec

from runwatch.agents.events import Published, decode
from runwatch.agents.runs.resume import rebuild
from runwatch.agents.store import Store

#: Earlier runs a thread's run sees (the most recent ones): a long thread must not grow a
#: model's context, or the work of rebuilding it, without end.
MAX_THREAD_RUNS = 50
#: Characters of earlier turns a run's model sees at most (older runs are left out first; the most
#: recent one always comes, whole).
MAX_THREAD_CONTEXT_CHARS = 512 * 1024
#: How often a run waiting for its turn looks whether the runs before it finished.
TURN_POLL_SECONDS = 0.2

History = Callable[[str], Awaitable[list[Published]]]
#: What to do when a run is started in a thread whose last run is still active.
IfBusy = Literal["reject", "queue", "interrupt"]


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


def _size(turns: list[dict[str, Any]]) -> int:
    return sum(len(str(t.get("content") or "")) + len(str(t.get("tool_calls") or "")) for t in turns)


async def wait_for_turn(store: Store, thread: str, run_id: str) -> None:
    """Return once every run of ``thread`` admitted before ``run_id`` has finished."""
    while await store.thread_live(thread, before=run_id):  # noqa: ASYNC110 -- across instances: the store tells
        await asyncio.sleep(TURN_POLL_SECONDS)


async def context(store: Store, history: History, thread: str, run_id: str) -> list[dict[str, Any]]:
    """The turns of the thread's runs before ``run_id``, in order: the last ``MAX_THREAD_RUNS``
    runs, and of those the most recent that fit in ``MAX_THREAD_CONTEXT_CHARS``."""
    kept: list[list[dict[str, Any]]] = []
    size = 0
    for run in reversed(await store.thread_runs(thread, MAX_THREAD_RUNS, before=run_id)):
        said = turns(await history(run.id))
        size += _size(said)
        if size > MAX_THREAD_CONTEXT_CHARS and kept:
            break
        kept.append(said)
    return [turn for said in reversed(kept) for turn in said]
