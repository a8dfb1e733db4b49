"""An external run whose agent goes silent past its lease ends ``agent_lost``."""

from __future__ import annotations

from tests.server.ingest.agent import Agent, numbered, tokens


async def test_a_silent_agent_s_run_ends_agent_lost_within_its_lease(server, agent: Agent):
    watcher = await server.watcher()
    try:
        run = await agent.run(lease_seconds=1)
        await watcher.subscribe(run)
        await agent.post(run, numbered(tokens("then silence")))
        events = await watcher.until_finished(run, timeout=5)
    finally:
        await watcher.close()
    posted = next(e for e in events if e["type"] == "token")
    end = events[-1]
    assert (end["type"], end["status"], end["error"]) == ("run.finished", "failed", "agent_lost")
    assert 1.0 <= end["ts"] - posted["ts"] < 1.0 + 1.0  # its lease, and at most a sweep or two after
    late = await agent.post(run, numbered(tokens("back"), start=2))
    assert late.status_code == 409 and late.json()["code"] == "already_finished"
    polled = await agent.controls(run)
    assert polled.status_code == 200 and polled.json()["status"] == "failed"
