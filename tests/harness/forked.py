"""``runwatch serve`` processes forked from one that has already imported runwatch.

The suite starts some 200 servers. Each fresh ``python -m runwatch.api.cli serve`` spends about
1.4 s of CPU importing Litestar, uvicorn and the openai SDK before it does anything, two thirds of
the suite's CPU time on a 2-core machine. Here a forkserver (the standard library's
``multiprocessing`` one) imports all of that once per test process, and each server is a fork of
it: a process of its own all the same — its own pid, environment, working directory and log file,
signals and ``kill -9`` as for any process, its exit status reported as ``subprocess`` reports one
(negative for a signal) — that starts in a fraction of the time. ``Server(program=[...])`` still
execs a real command, for the tests about the installed command itself.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import subprocess
import sys
from multiprocessing.context import ForkServerContext
from pathlib import Path

#: What ``runwatch serve`` imports on its way up (imported in the forkserver, shared by every fork).
PRELOAD = [
    "runwatch.api.cli.commands",
    "runwatch.api.app",
    "runwatch.api.ws.framing",
    "runwatch.api.logs",
    "runwatch.api.runtime",
    "runwatch.api.server",
    "runwatch.agents.store",
    "uvicorn",
    "uvicorn.lifespan.on",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.websockets_sansio_impl",
    "redis.asyncio",
    "asyncpg",
]

_context: ForkServerContext | None = None


def _forkserver() -> ForkServerContext:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _run(argv: list[str], env: dict[str, str], cwd: str, log_path: str) -> None:
    """In the fork: become ``runwatch ARGV`` run from ``cwd`` with ``env``, writing to ``log_path``."""
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    # The import path a new ``python -m`` would have: its working directory, then PYTHONPATH.
    sys.path[:0] = [cwd, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    importlib.invalidate_caches()
    sys.argv = ["runwatch", *argv]
    from runwatch.api.cli.commands import main

    try:
        code = main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)


class ForkedProcess:
    """What ``tests.conftest.Server`` uses of a ``subprocess.Popen``, for a forked ``runwatch``."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        # Daemonic: a server a failed test left running is stopped when the test process exits.
        self._process = _forkserver().Process(target=_run, args=(argv, env, str(cwd), str(log_path)), daemon=True)
        self._process.start()
        self.pid: int = self._process.pid  # type: ignore[assignment]
        self.args = ["runwatch", *argv]

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
