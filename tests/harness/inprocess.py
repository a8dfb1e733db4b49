"""``runwatch serve`` in a thread of the test process, for tests that only talk HTTP and WebSocket.

As httpx's and Starlette's tests do: a real uvicorn on a real port, run by a thread with its own
event loop, so a test talks to it over sockets exactly as to a process — and no process is started,
forked or imported again. The app is built as ``serve`` builds it: settings by the CLI's own loader
(``load_settings``) from ``RUNWATCH_*`` variables given here (never this process's environment),
runwatch's uvicorn ``Server`` (front door, drain on shutdown) and the same uvicorn options.

What a thread cannot be, it does not pretend to be: there is no pid to signal or to read ``/proc``
of, only a graceful stop (SIGTERM's or SIGINT's); its log is not kept in a file (structlog, left as
the test process has it, prints it to the test's captured output). Tests that kill, crash, restart
a server, read its log or its process's figures keep a process of their own (tests/harness/forked.py).
"""

from __future__ import annotations

import asyncio
import gc
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.harness.waiting import eventually_blocking

if TYPE_CHECKING:
    from runwatch.api.server import Server

#: What the process's exit status would be: a graceful stop, or a start that failed (uvicorn's 3).
STOPPED, FAILED = 0, 3

#: The runtime sets the interpreter's switch interval as it starts (api/runtime.py): this process's
#: is put back once no in-process server is running.
_serving = {"count": 0, "interval": sys.getswitchinterval()}
_serving_lock = threading.Lock()


def _enter() -> None:
    with _serving_lock:
        if _serving["count"] == 0:
            _serving["interval"] = sys.getswitchinterval()
        _serving["count"] += 1


def _leave() -> None:
    with _serving_lock:
        _serving["count"] -= 1
        if _serving["count"] == 0:
            sys.setswitchinterval(_serving["interval"])
            # The server froze the heap at startup (api/server.py): this process's is the tests'
            # too, and the app's objects must be collectable once it has stopped.
            gc.unfreeze()


class ThreadedServe:
    """What ``tests.conftest.Server`` uses of a ``subprocess.Popen``, for a runwatch served by a
    thread of this process: ``poll``, ``wait``, ``returncode`` and a graceful ``send_signal``."""

    def __init__(self, overrides: dict[str, Any], env: dict[str, str]) -> None:
        self._overrides = overrides
        self._env = {k: v for k, v in env.items() if k.startswith(("RUNWATCH_", "OPENAI_"))}
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Why the thread ended other than by a graceful stop (a bad setting, a failed start).
        self.error: BaseException | None = None
        self.returncode: int | None = None
        self._thread = threading.Thread(target=self._serve, name=f"runwatch:{overrides.get('port')}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        """The thread: build the app as ``serve`` does, then serve it until told to stop."""
        from runwatch.api.app import create_app
        from runwatch.api.runtime import Runtime
        from runwatch.api.server import Server, uvicorn_config
        from runwatch.api.settings.config import load_settings

        code = FAILED
        _enter()
        try:
            settings = load_settings(self._overrides, environ=self._env)
            runtime = Runtime(settings)
            config = uvicorn_config(
                create_app(settings, runtime), settings, host="127.0.0.1", port=self._overrides["port"]
            )
            self._server = Server(config, runtime)
            with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
                self._loop = runner.get_loop()
                runner.run(self._server.serve())
            code = STOPPED if self._server.started else FAILED
        except BaseException as exc:  # a failed start exits with SystemExit: start() reports it
            self.error = exc
        finally:
            _leave()
            self.returncode = code

    def wait_started(self, timeout: float) -> None:
        """Until uvicorn listens (``started``); a ``RuntimeError`` if the thread ended first."""

        def started() -> bool:
            if self.returncode is not None:
                raise RuntimeError(f"runwatch did not start: {self.error!r}") from self.error
            return self._server is not None and self._server.started

        eventually_blocking(started, timeout, "the in-process server to start", interval=0.01)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._thread.join(timeout)
        if self._thread.is_alive() or self.returncode is None:
            raise subprocess.TimeoutExpired(["runwatch (in-process)"], timeout or 0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """SIGTERM or SIGINT: the graceful stop uvicorn's handler starts (drain, then close)."""
        if sig not in (signal.SIGTERM, signal.SIGINT):
            raise ValueError(f"an in-process server stops only gracefully, not by {signal.Signals(sig).name}")
        if self.returncode is None and self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.handle_exit, sig, None)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """What a thread has of SIGKILL, for a server that will not stop: its event loop stopped
        where it is, nothing drained (its tasks are cancelled as the loop closes)."""
        if self.returncode is None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)


def data_overrides(port: int, data_dir: Path) -> dict[str, Any]:
    """The command-line options ``Server`` gives a process (``--port``, ``--data-dir``)."""
    return {"host": "127.0.0.1", "port": port, "data_dir": str(data_dir)}
