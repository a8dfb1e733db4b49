"""README's OpenAI Agents SDK example (``### The OpenAI Agents SDK`` in "Bring your own agent") runs
as written: a separate process, started from a folder with no ``agents/`` in it, streams an Agents
SDK run against runwatch's offline model, and runwatch stores it whole."""

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
    section = (ROOT / "README.md").read_text().split("## Bring your own agent", 1)[1].split("\n## ", 1)[0]
    framework = section.split("### The OpenAI Agents SDK", 1)[1]
    return re.search(r"```python\n(.*?)```", framework, re.S).group(1)


async def test_the_readme_s_openai_agents_example_reports_a_run_as_written(server: Server, key: str, tmp_path: Path):
    script = tmp_path / "oai_agent.py"
    script.write_text(_example())
    env = {**os.environ, "RUNWATCH_URL": server.url, "RUNWATCH_AGENT_KEY": key}
    command = [sys.executable, str(script)]
    result = await asyncio.to_thread(
        subprocess.run, command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    async with server.client() as c:
        runs = (await c.get("/api/runs", params={"agent": "oai-agent"})).json()["runs"]
    assert len(runs) == 1 and runs[0]["external"] is True
    kept = await stored(server, runs[0]["id"])
    answer = "".join(e["text"] for e in kept if e["type"] == "token")
    assert answer.strip() and answer.strip() == result.stdout.strip()
    assert [e["type"] for e in kept if e["type"] != "token"] == [
        "run.queued",
        "run.started",
        "step.started",
        "step.finished",
        "run.finished",
    ]
    assert kept[-1]["status"] == "succeeded"
