"""README's "Bring your own agent" examples, run as written: each is the first Python block under its
heading, run as a script of its own in a folder of the test's (where no ``agents/`` folder shadows
the Agents SDK's package), with the two variables the README names."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

SECTION = "## Bring your own agent"


def example(heading: str | None = None) -> str:
    """The Python block under ``heading`` (a ``###`` of the section), or the section's own first."""
    section = (ROOT / "README.md").read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    if heading is not None:
        section = section.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


async def run_example(code: str, name: str, url: str, key: str, folder: Path) -> subprocess.CompletedProcess[Any]:
    """Run ``code`` as ``folder/name`` with ``RUNWATCH_URL`` and ``RUNWATCH_AGENT_KEY``; it must succeed."""
    script = folder / name
    script.write_text(code)
    env = {**os.environ, "RUNWATCH_URL": url, "RUNWATCH_AGENT_KEY": key}
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, str(script)], env=env, cwd=folder, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result
