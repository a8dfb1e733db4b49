"""README's "LangChain and LangGraph" example runs as written: a separate process with LangChain,
LangGraph and runwatch.client reports a model call and a graph run, each a whole run with the
model's answer as its tokens."""

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
    own = readme.split("## Bring your own agent", 1)[1].split("\n## ", 1)[0]
    section = own.split("### LangChain and LangGraph", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


async def _run_of(server: Server, agent: str) -> list[dict]:
    async with server.client() as c:
        runs = (await c.get("/api/runs", params={"agent": agent})).json()["runs"]
    assert len(runs) == 1 and runs[0]["external"] is True
    return await stored(server, runs[0]["id"])


async def test_the_readme_langchain_example_reports_its_runs_as_written(server: Server, key: str, tmp_path: Path):
    script = tmp_path / "lc_agent.py"
    script.write_text(_example())
    env = {**os.environ, "RUNWATCH_URL": server.url, "RUNWATCH_AGENT_KEY": key}
    command = [sys.executable, str(script)]
    result = await asyncio.to_thread(
        subprocess.run, command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for agent, answer in (("lc-chain", "Hi from LangChain"), ("lc-graph", "Hi from LangGraph")):
        kept = await _run_of(server, agent)
        assert "".join(e["text"] for e in kept if e["type"] == "token") == answer
        assert [e["type"] for e in kept if e["type"] in ("step.started", "step.finished")] == [
            "step.started",
            "step.finished",
        ]
        assert kept[-1]["type"] == "run.finished" and kept[-1]["status"] == "succeeded"
