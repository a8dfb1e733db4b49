"""A measuring process the bench talks to line by line: commands on its stdin, one JSON object per
line on its stdout (``{"event": NAME, …}``), its stderr kept in a file for the error if it fails."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import tempfile
import threading
from typing import IO, Any

from bench import servers


class Child:
    def __init__(self, name: str, core: str, module: str, spec: dict[str, Any]) -> None:
        self.name = name
        self._stderr = tempfile.TemporaryFile("w+")
        argv = [sys.executable, "-m", module, json.dumps(spec)]
        self.proc = subprocess.Popen(
            servers.pinned(core, argv),
            cwd=servers.ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self, out: IO[str]) -> None:
        for line in out:
            self._lines.put(line)
        self._lines.put(None)  # the process closed its stdout: it ended

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def expect(self, event: str, timeout: float = 120) -> dict[str, Any]:
        """The next line, which must be ``event``'s (else the process's stderr in the error)."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.name}: no {event!r} within {timeout} s{self._tail()}") from None
        if line is None:
            self.proc.wait()
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before {event!r}{self._tail()}")
        got = json.loads(line)
        if got.get("event") != event:
            raise RuntimeError(f"{self.name}: expected {event!r}, got {line[:300]!r}{self._tail()}")
        return got

    def _tail(self) -> str:
        self._stderr.seek(0)
        return ":\n" + self._stderr.read()[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._stderr.close()


def say(event: str, **fields: Any) -> None:
    """A child's line to the bench."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def heard() -> dict[str, Any]:
    """The bench's next command to a child (blocking: call it off the event loop)."""
    line = sys.stdin.readline()
    if not line:
        raise SystemExit("the bench closed our stdin")
    return json.loads(line)
