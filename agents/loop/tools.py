"""Tools: plain sync or async functions, described to the model by their type hints and docstring.

A tool may ask for a ``ToolContext`` parameter (by annotation); it is injected, not shown to the
model, and lets the tool report progress (``status`` events) and register cleanup that runs
however the call ends — success, error or cancellation.

A tool may need a person's approval before each call (``approval=True``), or before the calls its
policy picks from their arguments (``approval=lambda args: args["env"] == "production"``; a
string returned is the reason shown to the approver). A policy that raises asks for approval.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, get_args, get_type_hints

import msgspec

from runwatch.agents.events import Emit, Status

Cleanup = Callable[[], Awaitable[None] | None]
#: ``True``: every call needs approval; a callable decides per call from the decoded arguments
#: (truthy: it does; a ``str``: it does, and that is the reason shown).
ApprovalPolicy = bool | Callable[[dict[str, Any]], bool | str | None]


class ToolError(Exception):
    """Raise from a tool to report a failure to the model in plain words (no traceback)."""


class ToolContext:
    """What a running tool call may use of the run it belongs to."""

    def __init__(self, run_id: str, call_id: str, emit: Emit) -> None:
        self.run_id = run_id
        self.call_id = call_id
        self._emit = emit
        self._cleanups: list[Cleanup] = []
        self._loop = asyncio.get_running_loop()

    async def status(self, message: str, progress: float | None = None) -> None:
        """Publish a ``status`` event for this call (from an async tool)."""
        await self._emit(Status(run_id=self.run_id, message=message, call_id=self.call_id, progress=progress))

    def status_sync(self, message: str, progress: float | None = None) -> None:
        """Publish a ``status`` event from a sync tool's worker thread; blocks until published."""
        asyncio.run_coroutine_threadsafe(self.status(message, progress), self._loop).result()

    def on_cleanup(self, fn: Cleanup) -> None:
        """Run ``fn`` when the call ends, last registered first; sync or async."""
        self._cleanups.append(fn)

    async def run_cleanups(self) -> None:
        while self._cleanups:
            result = self._cleanups.pop()()
            if inspect.isawaitable(result):
                await result


def _describe(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip()


class Tool:
    """A function made callable by the model: name, description, JSON schema, argument decoding."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        approval: ApprovalPolicy = False,
    ):
        self.fn = fn
        self.approval = approval
        self.name = name or fn.__name__
        self.description = description if description is not None else _describe(fn)
        self.is_async = inspect.iscoroutinefunction(fn)
        hints = get_type_hints(fn)
        self._context_param: str | None = None
        fields: list[tuple] = []
        properties: dict[str, Any] = {}
        required: list[str] = []
        for param in inspect.signature(fn).parameters.values():
            annotation = hints.get(param.name, Any)
            if annotation is ToolContext or ToolContext in get_args(annotation):
                self._context_param = param.name
                continue
            schema = msgspec.json.schema(annotation)
            if param.default is not inspect.Parameter.empty and isinstance(param.default, str | int | float | bool):
                schema["default"] = param.default
            properties[param.name] = schema
            if param.default is inspect.Parameter.empty:
                required.append(param.name)
                fields.append((param.name, annotation))
            else:
                fields.append((param.name, annotation, param.default))
        self.parameters = {"type": "object", "properties": properties, "required": required}
        fields.sort(key=len)  # msgspec wants required fields first
        self._args_type = msgspec.defstruct(f"{self.name}_args", fields, forbid_unknown_fields=True)

    def spec(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for this tool."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def approval_reason(self, arguments: dict[str, Any]) -> str | None:
        """Why this call needs a person's approval, or None if it does not (see ``ApprovalPolicy``)."""
        policy = self.approval
        if policy is True:
            return f"{self.name} always needs approval"
        if not policy:
            return None
        try:
            verdict = policy(arguments)  # type: ignore[operator]
        except Exception as exc:  # fail closed: a broken policy asks a person
            return f"the approval policy of {self.name} failed ({type(exc).__name__}: {exc})"
        if not verdict:
            return None
        return verdict if isinstance(verdict, str) else f"{self.name} needs approval for these arguments"

    def decode_arguments(self, raw: str) -> dict[str, Any]:
        """Decode and validate the model's JSON arguments; raises ``ToolError`` with the reason."""
        try:
            args = msgspec.json.decode(raw or "{}", type=self._args_type)
        except msgspec.DecodeError as exc:
            raise ToolError(f"invalid arguments for {self.name}: {exc}") from None
        return msgspec.structs.asdict(args)

    async def call(self, arguments: dict[str, Any], ctx: ToolContext) -> Any:
        kwargs = dict(arguments)
        if self._context_param is not None:
            kwargs[self._context_param] = ctx
        if self.is_async:
            return await self.fn(**kwargs)
        return await asyncio.to_thread(self.fn, **kwargs)


def as_tool(obj: Tool | Callable[..., Any]) -> Tool:
    return obj if isinstance(obj, Tool) else Tool(obj)


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    approval: ApprovalPolicy = False,
) -> Any:
    """Make ``fn`` a ``Tool``, as a decorator with or without arguments::

    @tool(approval=True)
    async def deploy(version: str, ctx: ToolContext) -> str: ...
    """

    def make(f: Callable[..., Any]) -> Tool:
        return Tool(f, name=name, description=description, approval=approval)

    return make(fn) if fn is not None else make
