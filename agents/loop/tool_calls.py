"""Making a step's tool calls: concurrently, each behind a person's approval when it needs one,
each published as ``tool.started`` then ``tool.finished`` however it ends (a denied call too, with
``denied``), each answering the model with its result or an error it can read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog

from runwatch.agents.events import Emit, ToolFinished, ToolStarted, Totals
from runwatch.agents.loop.agent import Agent
from runwatch.agents.loop.tools import Tool, ToolContext, ToolError
from runwatch.agents.runs.inbox import Inbox

log = structlog.get_logger()

#: Tool results larger than this (as JSON) are cut in the event; the model still gets all of it.
MAX_EVENT_RESULT_BYTES = 64 * 1024


@dataclass
class Call:
    """A tool call the model asked for: its id, the tool's name and the arguments' JSON."""

    id: str = ""
    name: str = ""
    arguments: str = ""


def assistant_tool_calls(calls: Iterable[Call]) -> list[dict[str, Any]]:
    """A step's tool calls as its assistant message lists them (``tool_calls``)."""
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls]


def _encode_result(value: Any, limit: int | None) -> tuple[Any, bytes]:
    """A tool's return value as JSON builtins and as the JSON the model gets; ``ToolError`` if it
    cannot be encoded or is over ``limit`` bytes."""
    try:
        result = msgspec.to_builtins(value, enc_hook=repr)
        encoded = msgspec.json.encode(result)
    except Exception as exc:  # a huge int, a NaN key, a __repr__ that raises: all the model's to know
        raise ToolError(f"the tool's result cannot be encoded as JSON: {type(exc).__name__}: {exc}") from None
    if limit is not None and len(encoded) > limit:
        raise ToolError(
            f"the tool's result is {len(encoded)} bytes of JSON, over the limit of {limit} bytes "
            "(setting max_tool_result_bytes, RUNWATCH_MAX_TOOL_RESULT_BYTES)"
        )
    return result, encoded


def _event_result(result: Any, encoded: bytes) -> Any:
    if len(encoded) <= MAX_EVENT_RESULT_BYTES:
        return result
    return encoded[:MAX_EVENT_RESULT_BYTES].decode(errors="ignore") + f"… [{len(encoded)} bytes in all]"


def _error_content(error: str) -> str:
    return msgspec.json.encode({"error": error}).decode()


def _leaf(group: BaseExceptionGroup) -> BaseException:
    """The first exception inside ``group`` that is not itself a group."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


def parse_arguments(raw: str) -> Any:
    try:
        return msgspec.json.decode(raw or "{}")
    except msgspec.DecodeError:
        return raw


class ToolCalls:
    """Makes tool calls for a ``Runner``. ``max_tool_result_bytes`` bounds a tool result's JSON:
    past it the model gets an error instead (``None``: no limit). ``redact`` scrubs secrets from a
    tool's error text before it becomes an event (and reaches the model)."""

    def __init__(self, emit: Emit, *, max_tool_result_bytes: int | None, redact: Callable[[str], str] = str) -> None:
        self._emit = emit
        self._max_tool_result = max_tool_result_bytes
        self._redact = redact

    async def messages(
        self, run_id: str, agent: Agent, calls: list[Call], totals: Totals, inbox: Inbox | None
    ) -> list[dict[str, Any]]:
        """Make a step's tool calls; the ``tool`` messages the model gets back, in call order."""
        totals.tool_calls += len(calls)
        results = await self._call_tools(run_id, agent, calls, inbox)
        return [{"role": "tool", "tool_call_id": c.id, "content": r} for c, r in zip(calls, results, strict=True)]

    async def _call_tools(self, run_id: str, agent: Agent, calls: list[Call], inbox: Inbox | None) -> list[str]:
        """Run a step's tool calls concurrently; their contents for the model, in call order.

        ``_call_tool`` raises nothing but ``CancelledError``, which a task group does not wrap;
        should anything else escape, the run reports that exception itself, not the group.
        """
        if inbox is not None:
            inbox.calls_begin(len(calls))  # all of them, before any may wait: see Inbox
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._call_tool(run_id, agent, c, inbox)) for c in calls]
        except BaseExceptionGroup as failed:
            if len(failed.exceptions) > 1:
                log.error("tools.failed", errors=[repr(e) for e in failed.exceptions])
            raise _leaf(failed) from None
        return [t.result() for t in tasks]

    async def _call_tool(self, run_id: str, agent: Agent, call: Call, inbox: Inbox | None) -> str:
        """Run one tool call and return the tool message content for the model.

        Raises nothing but ``CancelledError``: a failing tool, bad arguments, a result that cannot
        be encoded or is too large all become an error the model reads.
        """
        try:
            tool = agent.tool(call.name)
            if tool is not None and (denied := await self._ask_approval(agent, tool, call, inbox)):
                return await self._denied(run_id, call, denied)
            return await self._run_tool(run_id, agent, call)
        except Exception as exc:  # publishing failed; the tool's own failures are handled in _run_tool
            log.exception("tool.publish_failed", tool=call.name, call_id=call.id)
            return _error_content(f"{type(exc).__name__}: {exc}")
        finally:
            if inbox is not None:
                inbox.call_ended()

    async def _ask_approval(self, agent: Agent, tool: Tool, call: Call, inbox: Inbox | None) -> str | None:
        """Wait for a person's decision if this call needs one; None to make the call (with the
        arguments approved, maybe edited), else what the model gets instead of the result."""
        try:
            arguments = tool.decode_arguments(call.arguments)
        except ToolError:
            return None  # the call fails on its arguments, as any other would
        reason = agent.approval_reason(tool, arguments)
        if reason is None:
            return None
        if inbox is None:
            return f"{tool.name} needs approval, and nobody can give it to this run"
        resolved = await inbox.approval(call.id, tool, parse_arguments(call.arguments), reason)
        if resolved.decision != "approved":
            return resolved.message or "the call was not approved"
        call.arguments = msgspec.json.encode(resolved.arguments).decode()
        return None

    async def _denied(self, run_id: str, call: Call, message: str) -> str:
        """A call a person denied (or let expire): never made; the model gets ``message``."""
        await self._emit(
            ToolStarted(run_id=run_id, call_id=call.id, tool=call.name, arguments=parse_arguments(call.arguments))
        )
        await self._emit(ToolFinished(run_id=run_id, call_id=call.id, tool=call.name, result=message, denied=True))
        return msgspec.json.encode(message).decode()

    async def _run_tool(self, run_id: str, agent: Agent, call: Call) -> str:
        """``tool.started``, the call, ``tool.finished`` — published however the call ends."""
        await self._emit(
            ToolStarted(run_id=run_id, call_id=call.id, tool=call.name, arguments=parse_arguments(call.arguments))
        )
        started = time.perf_counter()
        ctx = ToolContext(run_id, call.id, self._emit)
        result: Any = None
        encoded = b"null"
        error: str | None = None
        try:
            tool = agent.tool(call.name)
            if tool is None:
                raise ToolError(f"unknown tool {call.name!r}; tools: {', '.join(agent.tool_names) or 'none'}")
            value = await tool.call(tool.decode_arguments(call.arguments), ctx)
            result, encoded = _encode_result(value, self._max_tool_result)
        except ToolError as exc:
            error = self._redact(str(exc))
        except asyncio.CancelledError:
            error = "cancelled"
            raise
        except Exception as exc:
            error = self._redact(f"{type(exc).__name__}: {exc}")
            log.warning("tool.crashed", tool=call.name, call_id=call.id, error=error)
        finally:
            try:
                await ctx.run_cleanups()
            except Exception as exc:
                log.warning("tool.cleanup_failed", tool=call.name, call_id=call.id, error=repr(exc))
            finally:
                await self._emit(
                    ToolFinished(
                        run_id=run_id,
                        call_id=call.id,
                        tool=call.name,
                        result=None if error is not None else _event_result(result, encoded),
                        duration=round(time.perf_counter() - started, 4),
                        error=error,
                    )
                )
        if error is not None:
            return _error_content(error)
        return encoded.decode()
