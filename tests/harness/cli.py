"""The ``runwatch`` command run as a user runs it (a new process), and what a usage error prints."""

from __future__ import annotations

import subprocess
import sys


def runwatch(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runwatch.api.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``runwatch: …`` line a usage error prints (exit status 2, no traceback)."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("runwatch: "), result.stderr
    return result.stderr.strip()
