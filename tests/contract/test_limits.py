"""Size limits: a run's input, a model step's output, a tool result, and one token event's text."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from runwatch.agents.loop.coalesce import MAX_EVENT_CHARS
from runwatch.agents.offline.model import scenario_text
from tests.conftest import Server
from tests.harness.waiting import eventually
from tests.harness.watcher import text_of

LIMITS = {
    "RUNWATCH_MAX_INPUT_BYTES": "1024",
    "RUNWATCH_MAX_OUTPUT_BYTES": "10000",
    "RUNWATCH_MAX_TOOL_RESULT_BYTES": "100",
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("limited"), LIMITS).start()
    yield srv
    srv.stop()


async def test_an_input_over_the_limit_answers_413_naming_the_setting(limited):
    async with limited.client() as c:
        r = await c.post("/api/runs", json={"agent": "demo", "input": "é" * 513})  # 1,026 bytes of UTF-8
    assert r.status_code == 413
    assert "1024 bytes" in r.json()["detail"] and "RUNWATCH_MAX_INPUT_BYTES" in r.json()["detail"]


async def test_a_websocket_start_over_the_input_limit_answers_input_too_large(limited):
    w = await limited.watcher()
    reply = await w.request({"type": "start", "agent": "demo", "input": "x" * 1025})
    assert reply["type"] == "error" and reply["code"] == "input_too_large"
    assert "RUNWATCH_MAX_INPUT_BYTES" in reply["message"]
    await w.close()


async def test_a_step_over_the_output_limit_stops_the_stream_and_fails_the_run(limited):
    events = await limited.run_to_end({"tokens": 1_000_000, "rate": 0})
    final = events[-1]
    assert final["status"] == "failed"
    assert final["error"] == (
        "the model's output in step 0 passed the limit of 10000 bytes (setting max_output_bytes, "
        "RUNWATCH_MAX_OUTPUT_BYTES)"
    )
    assert len(text_of(events)) <= 10_000
    step = next(e for e in events if e["type"] == "step.finished")
    assert step["finish_reason"] == "error" and step["error_type"] == "other"

    async def model_stream_closed() -> bool:
        async with limited.client() as c:
            return (await c.get("/api/health")).json()["offline_streams"] == 0

    await eventually(model_stream_closed, timeout=5)


async def test_a_tool_result_over_the_limit_is_a_tool_error_the_model_sees(limited):
    events = await limited.run_to_end('call read_file {"path": "README.txt"}')  # 154 bytes of text
    call = next(e for e in events if e["type"] == "tool.finished")
    assert call["result"] is None
    assert call["error"].startswith("the tool's result is 158 bytes of JSON, over the limit of 100 bytes")
    assert "RUNWATCH_MAX_TOOL_RESULT_BYTES" in call["error"]
    assert "max_tool_result_bytes" in text_of(events)  # the offline model quotes what the tool said
    assert events[-1]["status"] == "succeeded"


@pytest.mark.parametrize("coalesce_ms", ["25", "0"])
async def test_no_token_event_holds_more_than_the_cap_and_the_text_is_unchanged(make_server, coalesce_ms):
    srv = make_server({"RUNWATCH_COALESCE_MS": coalesce_ms})
    events = await srv.run_to_end(json.dumps({"tokens": 5, "token_chars": 100_000}))
    tokens = [e for e in events if e["type"] == "token"]
    assert max(len(t["text"]) for t in tokens) <= MAX_EVENT_CHARS
    assert text_of(events) == "".join(scenario_text(5, 100_000))
    assert sum(t["deltas"] for t in tokens) == 5
    assert events[-1]["status"] == "succeeded"
