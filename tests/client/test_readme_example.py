"""README's "Bring your own agent" example runs as written: a separate process with the openai SDK
(against runwatch's offline model) and runwatch.client reports a run that is stored whole."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, Server
from tests.server.ingest.agent import stored


def _example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Bring your own agent", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


async def test_the_readme_example_reports_a_run_as_written(server: Server, key: str, tmp_path: Path):
    script = tmp_path / "my_agent.py"
    script.write_text(_example())
    env = {**os.environ, "RUNWATCH_URL": server.url, "RUNWATCH_AGENT_KEY": key}
    command = [sys.executable, str(script)]
    result = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    async with server.client() as c:
        runs = (await c.get("/api/runs", params={"agent": "my-agent"})).json()["runs"]
    assert len(runs) == 1 and runs[0]["external"] is True
    kept = await stored(server, runs[0]["id"])
    answer = "".join(e["text"] for e in kept if e["type"] == "token")
    assert answer.strip()
    assert [e["type"] for e in kept if e["type"] != "token"] == [
        "run.queued",
        "run.started",
        "step.started",
        "step.finished",
        "run.finished",
    ]
    assert kept[-1]["status"] == "succeeded"
    finished = next(e for e in kept if e["type"] == "step.finished")
    assert finished["usage"]["output_tokens"] > 0
