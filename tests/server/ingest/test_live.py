"""Watchers follow an external run live, as they follow runwatch's own."""

from __future__ import annotations

from tests.harness.watcher import assert_contiguous, text_of
from tests.server.ingest.agent import Agent, numbered, step


async def test_a_websocket_watcher_sees_an_external_run_s_tokens_as_they_are_posted(server, agent: Agent):
    watcher = await server.watcher()
    try:
        run = await agent.run()
        await watcher.subscribe(run)
        events = numbered([*step(0, "Hello", ", ", "world"), {"type": "run.finished", "status": "succeeded"}])
        await agent.post(run, events[:2])
        first = await watcher.wait_for(lambda m: m.get("run_id") == run and m.get("type") == "token")
        assert first["text"] == "Hello"  # seen before the rest was even posted
        await agent.post(run, events[2:])
        seen = await watcher.until_finished(run)
    finally:
        await watcher.close()
    assert_contiguous(seen)
    assert text_of(seen) == "Hello, world"
    assert [e["type"] for e in seen][:2] == ["run.queued", "run.started"] and seen[0]["external"] is True
