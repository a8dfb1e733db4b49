"""User agents: loaded from a module, their sync and async tools run, report progress and clean up."""

from __future__ import annotations

import textwrap

import pytest

from tests.conftest import Server
from tests.harness.watcher import text_of

MODULE = textwrap.dedent('''
    import time
    from runwatch.agents import Agent, ToolContext, ToolError

    def slow_upper(text: str, ctx: ToolContext) -> str:
        """Upper-case text slowly (a sync tool: it runs in a worker thread)."""
        ctx.status_sync("starting", progress=0.0)
        ctx.on_cleanup(lambda: None)
        time.sleep(0.05)  # slow on purpose: its progress is reported while it runs
        ctx.status_sync("halfway", progress=0.5)
        return text.upper()

    async def picky(n: int) -> int:
        """Accept only even numbers."""
        if n % 2:
            raise ToolError("n must be even")
        return n // 2

    def broken() -> None:
        """Always crashes."""
        raise RuntimeError("disk on fire")

    tooly = Agent(name="tooly", instructions="Use your tools.", tools=[slow_upper, picky, broken], max_steps=4)
    brief = Agent(name="brief", instructions="One step only.", tools=[picky], max_steps=1)
''')


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("agents")
    (folder / "my_agents.py").write_text(MODULE)
    server = Server(folder / "data", {"RUNWATCH_AGENTS": "my_agents", "PYTHONPATH": str(folder)}).start()
    yield server
    server.stop()


async def test_user_agents_are_listed_beside_the_demo(srv):
    async with srv.client() as c:
        agents = {a["name"]: a for a in (await c.get("/api/agents")).json()}
    assert set(agents) == {"demo", "tooly", "brief"}
    assert agents["tooly"]["tools"] == ["slow_upper", "picky", "broken"] and agents["brief"]["max_steps"] == 1


async def test_a_sync_tool_reports_progress_from_its_thread(srv):
    events = await srv.run_to_end(agent="tooly", user_input='call slow_upper {"text": "quiet"}')
    statuses = [e for e in events if e["type"] == "status"]
    assert [(s["message"], s["progress"]) for s in statuses] == [("starting", 0.0), ("halfway", 0.5)]
    finished = next(e for e in events if e["type"] == "tool.finished")
    assert finished["result"] == "QUIET" and finished["error"] is None and finished["duration"] >= 0.05
    assert statuses[0]["call_id"] == finished["call_id"]
    assert events[-1]["status"] == "succeeded" and "QUIET" in text_of(events)


async def test_tool_errors_and_crashes_go_back_to_the_model_and_the_run_goes_on(srv):
    events = await srv.run_to_end(
        agent="tooly", user_input='call picky {"n": 3} call broken {} call picky {"n": "x"} call nope {}'
    )
    results = [(e["tool"], e["error"]) for e in events if e["type"] == "tool.finished"]
    assert results[0] == ("picky", "n must be even")
    assert results[1] == ("broken", "RuntimeError: disk on fire")
    assert results[2][0] == "picky" and "invalid arguments for picky" in results[2][1]
    assert events[-1]["status"] == "succeeded"


async def test_an_agent_stops_at_max_steps(srv):
    events = await srv.run_to_end(agent="brief", user_input='call picky {"n": 2}')
    final = events[-1]
    assert final["status"] == "failed" and final["error"] == "reached the agent's max_steps (1) without a final answer"
    assert [e["type"] for e in events].count("tool.finished") == 1


async def test_parallel_tool_calls_run_concurrently(server):
    events = await server.run_to_end({"tokens": 1, "tool_calls": 3, "tool_seconds": 0.5, "parallel": True})
    started = [e for e in events if e["type"] == "tool.started"]
    finished = [e for e in events if e["type"] == "tool.finished"]
    assert len(started) == len(finished) == 3
    assert len({e["call_id"] for e in started}) == 3
    assert max(f["ts"] for f in finished) - min(s["ts"] for s in started) < 1.0  # not 1.5 s in a row
