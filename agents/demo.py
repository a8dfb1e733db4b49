"""The built-in ``demo`` agent and its offline tools: calculator, clock, sandboxed files, wait."""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import math
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

#: The largest integer the calculator holds, in bits (about 1,233 decimal digits). Big-integer
#: arithmetic holds the GIL even in a worker thread, so an unbounded ``**`` would freeze the
#: server; with every operand under this bound, only ``**`` can grow fast, and it is estimated first.
MAX_INT_BITS = 4096
#: The longest expression the calculator reads (a longer one could nest deep enough to recurse
#: without end).
MAX_EXPRESSION_CHARS = 1000

Number = int | float


def _too_large() -> ToolError:
    return ToolError(
        f"the result is too large: the calculator keeps integers under {MAX_INT_BITS} bits and floats finite"
    )


def _checked(value: object) -> Number:
    """``value`` if it is a number the calculator may hold, else a ``ToolError``."""
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise _too_large()
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _too_large()
        return value
    raise ToolError("the result is not a real number")


def _power(base: Number, exponent: Number) -> Number:
    """``base ** exponent``, refused before computing when the integer result would pass the bound."""
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if exponent * math.log2(abs(base)) >= MAX_INT_BITS:
            raise _too_large()
    return base**exponent


def _evaluate(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return _checked(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            return _checked(_power(left, right))
        return _checked(_OPS[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _checked(_OPS[type(node.op)](_evaluate(node.operand)))
    raise ToolError("only numbers and + - * / // % ** ( ) are allowed")


def calculator(expression: str) -> Number:
    """Evaluate an arithmetic expression such as "(2 + 3) * 4" and return the number."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None
    try:
        return _evaluate(tree)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise _too_large() from None
    except RecursionError:
        raise ToolError("the expression is nested too deeply") from None


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
