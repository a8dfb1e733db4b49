"""README's "LangChain and LangGraph" example runs as written: a separate process with LangChain,
LangGraph and runwatch.client reports a model call and a graph run, each a whole run with the
model's answer as its tokens."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Server
from tests.harness.readme import example, run_example
from tests.server.ingest.agent import stored


async def _run_of(server: Server, agent: str) -> list[dict]:
    async with server.client() as c:
        runs = (await c.get("/api/runs", params={"agent": agent})).json()["runs"]
    assert len(runs) == 1 and runs[0]["external"] is True
    return await stored(server, runs[0]["id"])


async def test_the_readme_langchain_example_reports_its_runs_as_written(server: Server, key: str, tmp_path: Path):
    await run_example(example("### LangChain and LangGraph"), "lc_agent.py", server.url, key, tmp_path)
    for agent, answer in (("lc-chain", "Hi from LangChain"), ("lc-graph", "Hi from LangGraph")):
        kept = await _run_of(server, agent)
        assert "".join(e["text"] for e in kept if e["type"] == "token") == answer
        assert [e["type"] for e in kept if e["type"] in ("step.started", "step.finished")] == [
            "step.started",
            "step.finished",
        ]
        assert kept[-1]["type"] == "run.finished" and kept[-1]["status"] == "succeeded"
