"""An agent in a separate process (tests/client/agents/chat_agent.py: the openai SDK against the
offline model, reported with ``run.stream_chat``): watchers follow its tokens live, a steering
message reaches it, and killed with SIGKILL its run ends ``agent_lost`` within its lease."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from runwatch.agents.offline.model import scenario_text
from tests.conftest import ROOT, Server
from tests.harness.identity import make_key
from tests.harness.watcher import Watcher, assert_contiguous, text_of

SCRIPT = ROOT / "tests" / "client" / "agents" / "chat_agent.py"
#: The lease the process registers its runs with, in seconds.
LEASE = 2.0


class AgentProcess:
    """The running script: what it said on stdout, one JSON line at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def said(self, timeout: float = 20.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        assert line, "the agent exited before saying it"
        return json.loads(line)

    async def end(self) -> int:
        """Close its stdin (it ends its run) and wait for it to exit."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        return await asyncio.wait_for(self.process.wait(), 20)


@asynccontextmanager
async def agent_process(server: Server, key: str, scenario: dict[str, Any]) -> AsyncIterator[AgentProcess]:
    env = {**os.environ, "RUNWATCH_URL": server.url, "RUNWATCH_AGENT_KEY": key}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        json.dumps(scenario),
        str(LEASE),
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        yield AgentProcess(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@asynccontextmanager
async def watching(server: Server, agent: AgentProcess) -> AsyncIterator[tuple[str, Watcher]]:
    """The run the agent registered, and a watcher subscribed to it."""
    run_id = (await agent.said())["run"]
    watcher = await server.watcher()
    try:
        await watcher.subscribe(run_id)
        yield run_id, watcher
    finally:
        await watcher.close()


def is_token(m: dict[str, Any]) -> bool:
    return m.get("type") == "token"


async def test_a_watcher_follows_the_process_s_tokens_live(server: Server, key: str):
    async with agent_process(server, key, {"tokens": 40, "rate": 100}) as agent:
        async with watching(server, agent) as (run_id, watcher):
            await watcher.wait_for(lambda m: m.get("type") == "step.finished")
            seen_live = watcher.events(run_id)  # all of the answer, and the run not ended yet
            assert (await agent.said())["answer"] == "".join(scenario_text(40))
            assert await agent.end() == 0
            seen = await watcher.until_finished(run_id)
    assert text_of(seen_live) == "".join(scenario_text(40))
    assert sum(1 for e in seen_live if is_token(e)) > 1  # token events as they came, not one at the end
    assert not any(e["type"] == "run.finished" for e in seen_live)
    assert_contiguous(seen)
    assert seen[-1]["status"] == "succeeded"


async def test_a_process_killed_mid_run_ends_agent_lost_within_its_lease(server: Server, key: str):
    async with agent_process(server, key, {"tokens": 2000, "rate": 100}) as agent:
        async with watching(server, agent) as (_, watcher):
            await watcher.wait_for(is_token)
            agent.process.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            end = await watcher.wait_for(lambda m: m.get("type") == "run.finished", timeout=LEASE + 5)
            lost_after = time.monotonic() - killed
    assert (end["status"], end["error"]) == ("failed", "agent_lost")
    assert lost_after < LEASE + 1.0  # its lease (renewed at most once more before the kill), and a sweep


async def test_a_steering_message_over_rest_reaches_the_process(server: Server, key: str, tenant: str):
    operator = await make_key(server, tenant, "operator", "ops")
    async with agent_process(server, key, {"tokens": 2000, "rate": 100}) as agent:
        async with watching(server, agent) as (run_id, watcher):
            await watcher.wait_for(is_token)
            async with server.client(operator) as c:
                r = await c.post(f"/api/runs/{run_id}/messages", json={"text": "focus on Q3"})
            assert r.status_code == 202, r.text
            first, reply = await agent.said(), await agent.said()
            assert await agent.end() == 0
            seen = await watcher.until_finished(run_id)
    assert first["messages"] == ["focus on Q3"] and first["answer"]  # cut short: it had begun
    assert reply["reply"] == 'You said: "focus on Q3"'  # the offline model read it in the conversation
    finished = [e for e in seen if e["type"] == "step.finished"]
    assert [e["finish_reason"] for e in finished] == ["interrupted", "stop"]
    assert seen[-1]["status"] == "succeeded"
