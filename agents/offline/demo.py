"""The built-in ``demo`` agent and its offline tools: calculator, clock, sandboxed files, wait, and
``deploy``, which pretends to deploy and always needs a person's approval."""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import errno
import math
import operator
import os
import stat
import time
import zoneinfo
from pathlib import Path

from runwatch.agents.loop.agent import Agent
from runwatch.agents.loop.tools import Tool, ToolContext, ToolError, tool

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


#: Seconds ``deploy`` takes, in ``DEPLOY_STAGES`` equal parts.
DEPLOY_SECONDS = 0.6
DEPLOY_STAGES = ("building", "uploading", "switching traffic")


@tool(approval=True)
async def deploy(version: str, ctx: ToolContext, environment: str = "staging") -> dict[str, str]:
    """Deploy a version of the service to an environment (pretend: nothing leaves this machine)."""
    if not version.strip() or len(version) > 64:
        raise ToolError("give a version of 1 to 64 characters, such as 1.4.2")
    if environment not in ("staging", "production"):
        raise ToolError('environment must be "staging" or "production"')
    for n, stage in enumerate(DEPLOY_STAGES):
        await ctx.status(f"{stage} {version} for {environment}", progress=round(n / len(DEPLOY_STAGES), 3))
        await asyncio.sleep(DEPLOY_SECONDS / len(DEPLOY_STAGES))
    return {"deployed": version, "environment": environment}


def _components(path: str) -> list[str]:
    """The names to walk from the files folder to ``path``; refuses absolute paths and ``..``."""
    names = [name for name in path.split("/") if name not in ("", ".")]
    if path.startswith("/") or ".." in names:
        raise ToolError(f"{path!r} is outside the files folder: give a path inside it, without '..'")
    return names


def _open_at(dir_fd: int, name: str, flags: int, path: str) -> int:
    """Open ``name`` in the folder ``dir_fd`` without following a link, or raise a ``ToolError``."""
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        raise ToolError(f"no file or folder {path!r}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ToolError(f"{path!r} is a link; links are not followed") from None
        if exc.errno == errno.ENOTDIR:
            raise ToolError(f"{path!r} goes through a file or a link where a folder should be") from None
        raise ToolError(f"cannot open {path!r}: {exc.strerror}") from None


def _open_folder(root: Path, names: list[str], path: str) -> int:
    """An fd of the folder ``root/names…``, walked one component at a time, never through a link."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in names:
            child = _open_at(fd, name, os.O_RDONLY | os.O_DIRECTORY, path)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def file_tools(root: Path) -> list[Tool]:
    """``list_files`` and ``read_file`` confined to ``root``.

    Paths are walked from an fd of ``root`` one component at a time, each opened with
    ``O_NOFOLLOW``; ``..`` and absolute paths are refused, and a file must be a regular file with
    one link. A symlink or hard link pointing out — even one swapped in between a check and a
    read — is never followed.
    """
    root = root.resolve()

    def list_files(path: str = ".") -> list[str]:
        """List the files in a folder of the sandboxed files area."""
        fd = _open_folder(root, _components(path), path)
        try:
            with os.scandir(fd) as entries:
                return sorted(e.name + ("/" if e.is_dir(follow_symlinks=False) else "") for e in entries)
        finally:
            os.close(fd)

    def read_file(path: str) -> str:
        """Read a text file from the sandboxed files area (at most 64 KiB)."""
        names = _components(path)
        if not names:
            raise ToolError(f"{path!r} is a folder, not a file")
        folder = _open_folder(root, names[:-1], path)
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
            fd = _open_at(folder, names[-1], os.O_RDONLY | os.O_NONBLOCK, path)
        finally:
            os.close(folder)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ToolError(f"{path!r} is not a plain file")
            if info.st_nlink != 1:
                raise ToolError(f"{path!r} has other hard links; such files are not read")
            with os.fdopen(fd, "rb", closefd=False) as file:
                data = file.read(MAX_FILE_BYTES)
        finally:
            os.close(fd)
        return data.decode("utf-8", errors="replace")

    return [Tool(list_files), Tool(read_file)]


def demo_agent(files_dir: Path | None = None) -> Agent:
    return Agent(
        name="demo",
        description="Shows multi-step tool use: arithmetic, the time, reading files, waiting, and an approved deploy.",
        instructions=(
            "You are a helpful assistant. Use the tools for arithmetic, the time, files and waiting, "
            "and deploy when asked to (a person approves each deploy); then answer briefly."
        ),
        tools=[calculator, clock, wait, deploy, *file_tools(files_dir or SAMPLE_FILES)],
        max_steps=12,
    )
