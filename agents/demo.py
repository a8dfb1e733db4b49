"""The built-in ``demo`` agent and its offline tools: calculator, clock, sandboxed files, wait."""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import operator
import time
import zoneinfo
from pathlib import Path

from runwatch.agents.agent import Agent
from runwatch.agents.tools import Tool, ToolContext, ToolError

SAMPLE_FILES = Path(__file__).parent / "sample_files"
MAX_FILE_BYTES = 64 * 1024

_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise ToolError("exponent too large")
        return _OPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.operand))
    raise ToolError("only numbers and + - * / // % ** ( ) are allowed")


def calculator(expression: str) -> float:
    """Evaluate an arithmetic expression such as "(2 + 3) * 4" and return the number."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None
    try:
        return _evaluate(tree)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None


def clock(timezone: str = "UTC") -> str:
    """Tell the current date and time in an IANA time zone such as "Europe/Paris"."""
    try:
        zone = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"unknown time zone {timezone!r}") from None
    return dt.datetime.now(zone).isoformat(timespec="seconds")


async def wait(seconds: float, ctx: ToolContext) -> dict[str, float]:
    """Wait for a number of seconds, reporting progress, like a slow job would."""
    if not 0 <= seconds <= 3600:
        raise ToolError("seconds must be between 0 and 3600")
    started = time.monotonic()

    async def released() -> None:
        await ctx.status("wait: timer released", progress=min(1.0, (time.monotonic() - started) / (seconds or 1)))

    ctx.on_cleanup(released)
    tick = min(0.5, seconds / 4) if seconds else 0
    while (spent := time.monotonic() - started) < seconds:
        await ctx.status(f"waiting {spent:.1f}/{seconds:g} s", progress=round(spent / seconds, 3))
        await asyncio.sleep(min(tick, seconds - spent))
    return {"waited": round(time.monotonic() - started, 3)}


def file_tools(root: Path) -> list[Tool]:
    """``list_files`` and ``read_file`` confined to ``root``: paths resolving outside it are refused."""
    root = root.resolve()

    def inside(path: str) -> Path:
        target = (root / path).resolve()
        if target != root and root not in target.parents:
            raise ToolError(f"{path!r} is outside the files folder")
        return target

    def list_files(path: str = ".") -> list[str]:
        """List the files in a folder of the sandboxed files area."""
        folder = inside(path)
        if not folder.is_dir():
            raise ToolError(f"{path!r} is not a folder")
        return sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())

    def read_file(path: str) -> str:
        """Read a text file from the sandboxed files area (at most 64 KiB)."""
        target = inside(path)
        if not target.is_file():
            raise ToolError(f"no file {path!r}")
        data = target.read_bytes()[:MAX_FILE_BYTES]
        return data.decode("utf-8", errors="replace")

    return [Tool(list_files), Tool(read_file)]


def demo_agent(files_dir: Path | None = None) -> Agent:
    return Agent(
        name="demo",
        description="Shows multi-step tool use: arithmetic, the time, reading files, waiting.",
        instructions=(
            "You are a helpful assistant. Use the tools for arithmetic, the time, files and waiting; "
            "then answer briefly."
        ),
        tools=[calculator, clock, wait, *file_tools(files_dir or SAMPLE_FILES)],
        max_steps=12,
    )
