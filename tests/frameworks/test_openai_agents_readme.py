"""README's OpenAI Agents SDK example (``### The OpenAI Agents SDK`` in "Bring your own agent") runs
as written: a separate process, started from a folder with no ``agents/`` in it, streams an Agents
SDK run against runwatch's offline model, and runwatch stores it whole."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Server
from tests.harness.readme import example, run_example
from tests.server.ingest.agent import stored


async def test_the_readme_s_openai_agents_example_reports_a_run_as_written(server: Server, key: str, tmp_path: Path):
    result = await run_example(example("### The OpenAI Agents SDK"), "oai_agent.py", server.url, key, tmp_path)
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
