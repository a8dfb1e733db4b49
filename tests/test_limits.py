"""Size limits: one token event's text."""

from __future__ import annotations

import json

import pytest

from runwatch.agents.coalesce import MAX_EVENT_CHARS
from runwatch.agents.offline_model import scenario_text
from tests.conftest import Server
from tests.watcher import text_of


async def _run(srv: Server, text: str | dict) -> list[dict]:
    w = await srv.watcher()
    run = await srv.start_run(text)
    await w.subscribe(run)
    events = await w.until_finished(run)
    await w.close()
    return events


@pytest.mark.parametrize("coalesce_ms", ["25", "0"])
async def test_no_token_event_holds_more_than_the_cap_and_the_text_is_unchanged(make_server, coalesce_ms):
    srv = make_server({"RUNWATCH_COALESCE_MS": coalesce_ms})
    events = await _run(srv, json.dumps({"tokens": 5, "token_chars": 100_000}))
    tokens = [e for e in events if e["type"] == "token"]
    assert max(len(t["text"]) for t in tokens) <= MAX_EVENT_CHARS
    assert text_of(events) == "".join(scenario_text(5, 100_000))
    assert sum(t["deltas"] for t in tokens) == 5
    assert events[-1]["status"] == "succeeded"
