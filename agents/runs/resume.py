"""Rebuilding a run's conversation from its stored events, to continue it on another instance.

Steps that finished are kept as they were: the assistant's text and tool calls, and the results
of every tool call that finished. A step that had not finished is dropped and runs again; tool
calls of a finished step that had not finished are made again. Nothing that finished runs twice.
A step a message interrupted keeps what the model said before it; people's messages come in
where they were delivered; approvals still open stay open (``approvals``), decided ones are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from runwatch.agents.events import (
    ApprovalRequested,
    ApprovalResolved,
    MessageReceived,
    Published,
    RunFinished,
    StepFinished,
    StepStarted,
    Token,
    ToolFinished,
    ToolStarted,
    Totals,
    decode,
)
from runwatch.agents.loop.tool_calls import Call, assistant_tool_calls

if TYPE_CHECKING:  # (the store's package opens its backends' modules: the loop imports this one)
    from runwatch.agents.store import Store


@dataclass
class Resumed:
    """Where a run continues: ``messages`` after the system and user ones, the next step's index,
    the tool calls of the last finished step still to be made, and the totals so far (its finished
    steps and tool calls: the run's totals go on from them)."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    next_step: int = 0
    pending: list[Call] = field(default_factory=list)
    #: The final answer, when the last finished step had one (the run only lacks its end).
    answer: str | None = None
    totals: Totals = field(default_factory=Totals)
    finished: bool = False
    #: Approvals of the calls still to be made, by call id: the request, and its decision if any.
    approvals: dict[str, tuple[ApprovalRequested, ApprovalResolved | None]] = field(default_factory=dict)


async def history(store: Store, run_id: str) -> list[Published]:
    """Every stored event of a run, in order."""
    events: list[Published] = []
    while batch := await store.events(run_id, events[-1].seq if events else 0, 1_000):
        events += batch
    return events


def _content(ev: ToolFinished) -> str:
    if ev.error is not None:
        return msgspec.json.encode({"error": ev.error}).decode()
    return msgspec.json.encode(ev.result).decode()


def rebuild(history: Sequence[Published]) -> Resumed:
    out = Resumed()
    text: list[str] = []
    step_open = False
    calls: dict[str, Call] = {}  # the last finished step's calls, in call order
    results: dict[str, str] = {}
    requested: dict[str, ApprovalRequested] = {}  # approval id → request
    for p in history:
        ev = p.event if p.event is not None else decode(p.data)
        if isinstance(ev, StepStarted):
            _close_tools(out, calls, results)
            step_open, text = True, []
            out.next_step = ev.index
        elif isinstance(ev, Token) and step_open:
            text.append(ev.text)
        elif isinstance(ev, StepFinished):
            step_open = False
            if ev.finish_reason in ("error", "cancelled"):
                continue  # runs again
            out.totals.steps += 1
            out.totals.add_usage(ev.usage, ev.cost)
            out.next_step = ev.index + 1
            answer = "".join(text)
            if answer or ev.finish_reason != "interrupted":  # (cut before its first word: nothing said)
                out.messages.append({"role": "assistant", "content": answer or None})
            out.answer = answer if ev.finish_reason not in ("tool_calls", "interrupted") else None
        elif isinstance(ev, ToolStarted | ApprovalRequested):
            if ev.call_id not in calls:  # (the model's arguments: an approval's come before any edit)
                calls[ev.call_id] = Call(ev.call_id, ev.tool, _arguments(ev.arguments))
            if isinstance(ev, ApprovalRequested):
                requested[ev.approval_id] = ev
                out.approvals[ev.call_id] = (ev, None)
        elif isinstance(ev, ApprovalResolved) and ev.approval_id in requested:
            out.approvals[requested[ev.approval_id].call_id] = (requested[ev.approval_id], ev)
        elif isinstance(ev, ToolFinished) and ev.call_id in calls and ev.error != "cancelled":
            results[ev.call_id] = _content(ev)
            out.approvals.pop(ev.call_id, None)
        elif isinstance(ev, MessageReceived):
            _close_tools(out, calls, results)
            out.messages.append({"role": "user", "content": ev.text})
            out.answer = None
        elif isinstance(ev, RunFinished):
            out.finished = True
    _close_tools(out, calls, results)
    return out


def _arguments(value: object) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def _close_tools(out: Resumed, calls: dict[str, Call], results: dict[str, str]) -> None:
    """Attach the last finished step's tool calls to its assistant message; keep the unfinished ones."""
    if not calls:
        return
    assistant = out.messages[-1] if out.messages and out.messages[-1]["role"] == "assistant" else None
    if assistant is None:  # tool events without a finished step: cannot happen, the step ends first
        calls.clear()
        results.clear()
        return
    assistant["tool_calls"] = assistant_tool_calls(calls.values())
    out.answer = None
    out.pending = []
    for c in calls.values():
        if c.id in results:
            out.totals.tool_calls += 1
            out.messages.append({"role": "tool", "tool_call_id": c.id, "content": results[c.id]})
        else:
            out.pending.append(c)
    calls.clear()
    results.clear()
