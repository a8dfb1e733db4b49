"""README's "Bring your own agent" example runs as written: a separate process with the openai SDK
(against runwatch's offline model) and runwatch.client reports a run that is stored whole."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Server
from tests.harness.readme import example, run_example
from tests.server.ingest.agent import stored


async def test_the_readme_example_reports_a_run_as_written(server: Server, key: str, tmp_path: Path):
    await run_example(example(), "my_agent.py", server.url, key, tmp_path)
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
