"""A paused LangGraph graph's interrupts, asked of people as runwatch approvals; their decisions, as
the values ``Command(resume=...)`` hands back.

Three kinds of interrupt, told apart by their value:

- **HumanInTheLoopMiddleware, batched** (``{"action_requests": [...], "review_configs": [...]}``):
  one approval per action request (tool: its ``name``, arguments: its ``args``, reason: its
  ``description``, call id: the model's tool call id). Resumed with ``{"decisions": [...]}``, one
  decision per request in order.
- **HumanInTheLoopMiddleware, per call** (``{"type": "tool_approval", "tool_call_id", "name",
  "args", "description"}``): one approval; resumed with one decision.
- **Any other** ``interrupt(value)``: one approval (tool: the node that asked, arguments: the value,
  call id: the interrupt's id); resumed with ``{"decision": "approved" | "denied" | "expired",
  "arguments": ..., "message": ...}`` — what ``interrupt(...)`` returns in the node.

A HITL decision is ``{"type": "approve"}``; ``{"type": "edit", "edited_action": {"name", "args"}}``
when the person approved with other arguments (and the tool allows edits); ``{"type": "reject",
"message": ...}`` when they denied it (or it expired), or ``{"type": "respond", "message": ...}``
for a tool that allows only that. Every approval of one pause is asked at once.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from runwatch.client.langchain.callbacks import plain

if TYPE_CHECKING:
    from runwatch.client.run import AsyncRun
    from runwatch.client.wire import Decision


async def answers(run: AsyncRun, snapshot: Any) -> dict[str, Any]:
    """Ask people about every interrupt ``snapshot`` (a ``StateSnapshot``) waits on; the resume
    values by interrupt id (``Command(resume=...)`` takes them as they are)."""
    nodes = {i.id: task.name for task in snapshot.tasks for i in task.interrupts}
    calls = _tool_calls(snapshot.values)
    asks = {i.id: _ask(run, i, nodes.get(i.id, "interrupt"), calls) for i in snapshot.interrupts}
    got = await asyncio.gather(*asks.values())
    return dict(zip(asks, got, strict=True))


async def _ask(run: AsyncRun, interrupt: Any, node: str, calls: list[dict[str, Any]]) -> Any:
    value = interrupt.value
    if isinstance(value, dict) and isinstance(value.get("action_requests"), list):
        configs = value.get("review_configs") or []
        asked = []
        for n, action in enumerate(value["action_requests"]):
            allowed = configs[n].get("allowed_decisions", ()) if n < len(configs) else ()
            call_id = _call_id(calls, action) or f"{interrupt.id}:{n}"
            asked.append(_hitl(run, call_id, action, allowed))
        return {"decisions": list(await asyncio.gather(*asked))}
    if isinstance(value, dict) and value.get("type") == "tool_approval":
        allowed = _allowed(interrupt.response_schema)
        return await _hitl(run, str(value.get("tool_call_id") or interrupt.id), value, allowed)
    decision = await run.request_approval(interrupt.id, node, plain(value), f"{node} asks")
    arguments = plain(value) if decision.arguments is None else decision.arguments
    return {"decision": decision.decision, "arguments": arguments, "message": decision.message}


async def _hitl(run: AsyncRun, call_id: str, action: dict[str, Any], allowed: Any) -> dict[str, Any]:
    name, args = str(action.get("name", "tool")), plain(action.get("args"))
    decision = await run.request_approval(call_id, name, args, str(action.get("description") or ""))
    return hitl_decision(decision, name, args, tuple(allowed or ("approve", "edit", "reject")))


def hitl_decision(decision: Decision, name: str, args: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    """A runwatch decision as HumanInTheLoopMiddleware takes it (see the module's docstring)."""
    if decision.approved:
        edited = decision.arguments is not None and decision.arguments != args
        if (edited or "approve" not in allowed) and "edit" in allowed:
            return {"type": "edit", "edited_action": {"name": name, "args": decision.arguments or args}}
        return {"type": "approve"}
    message = decision.message or ("the approval expired" if decision.decision == "expired" else None)
    if "reject" not in allowed and "respond" in allowed:
        return {"type": "respond", "message": message or "denied"}
    return {"type": "reject", **({"message": message} if message else {})}


def _allowed(schema: Any) -> tuple[str, ...]:
    """The decision types a per-call interrupt's ``response_schema`` (JSON Schema) admits."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            kind = (node.get("properties") or {}).get("type")
            if isinstance(kind, dict):
                found.update(v for v in (kind.get("const"), *(kind.get("enum") or ())) if isinstance(v, str))
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(schema)
    return tuple(found & {"approve", "edit", "reject", "respond"})


def _tool_calls(values: Any) -> list[dict[str, Any]]:
    """The tool calls of the state's last AI message (what a batched HITL request is about)."""
    messages = values.get("messages") if isinstance(values, dict) else None
    for message in reversed(messages or ()):
        if getattr(message, "type", None) == "ai":
            return list(getattr(message, "tool_calls", None) or ())
    return []


def _call_id(calls: list[dict[str, Any]], action: dict[str, Any]) -> str | None:
    """The id of the model's call ``action`` is about (the first unclaimed one of its name and args)."""
    for n, call in enumerate(calls):
        if call.get("name") == action.get("name") and call.get("args") == action.get("args"):
            del calls[n]
            return str(call.get("id") or "") or None
    return None
