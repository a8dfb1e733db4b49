"""Batches of an external run's events: each event stored exactly once, in order, whatever the
retries; a bad batch refused whole with a clear 4xx, nothing stored."""

from __future__ import annotations

from tests.harness.watcher import assert_contiguous
from tests.server.ingest.agent import Agent, assert_stored_as_sent, numbered, sent_by_agent, step, stored, tokens


async def test_retried_and_overlapping_batches_store_each_event_once_in_order(server, agent: Agent):
    run = await agent.run()
    events = numbered(
        [*step(0, "one ", "two ", "three ", "four ", "five"), {"type": "run.finished", "status": "succeeded"}]
    )
    first = await agent.post(run, events[:4])
    retried = await agent.post(run, events[:4])  # its answer was lost: sent again as it was
    overlapping = await agent.post(run, events[2:])
    assert (first.json()["accepted"], first.json()["skipped"]) == (4, 0)
    assert (retried.json()["accepted"], retried.json()["skipped"]) == (0, 4)
    assert (overlapping.json()["accepted"], overlapping.json()["skipped"]) == (4, 2)
    assert overlapping.json()["last_n"] == len(events) and overlapping.json()["status"] == "succeeded"
    kept = await stored(server, run)
    assert_contiguous(kept)
    assert_stored_as_sent(kept, events)
    async with server.client() as c:
        summary = (await c.get(f"/api/runs/{run}")).json()
    assert summary["status"] == "succeeded" and summary["output_tokens"] == 5 and summary["steps"] == 1
    assert summary["answer_preview"] == "one two three four five"


async def test_a_batch_past_a_gap_is_refused_with_the_n_expected(server, agent: Agent):
    run = await agent.run()
    await agent.post(run, numbered(tokens("a", "b")))
    r = await agent.post(run, numbered(tokens("d"), start=4))
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "gap" and r.json()["expected_n"] == 3
    assert len(sent_by_agent(await stored(server, run))) == 2


async def test_an_event_type_only_runwatch_writes_is_refused(server, agent: Agent):
    run = await agent.run()
    for reserved in ("run.cancel_requested", "approval.resolved", "message.received", "run.started"):
        r = await agent.post(run, numbered([*tokens("fine"), {"type": reserved}]))
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "reserved_type" and reserved in r.json()["detail"]
    assert [e["type"] for e in await stored(server, run)] == ["run.queued", "run.started"]


async def test_an_oversized_field_is_refused_and_nothing_of_its_batch_is_stored(server, agent: Agent):
    run = await agent.run()
    big_token = {"type": "token", "text": "x" * 16_385}
    big_result = {"type": "tool.finished", "call_id": "c1", "tool": "fetch", "result": "y" * 70_000}
    for oversized in (big_token, big_result):
        r = await agent.post(run, numbered([*tokens("fine"), oversized]))
        assert r.status_code == 413, r.text
        assert r.json()["code"] == "field_too_large" and "events[1]" in r.json()["detail"]
    assert len(await stored(server, run)) == 2


async def test_a_bad_event_anywhere_refuses_the_whole_batch(server, agent: Agent):
    run = await agent.run()
    r = await agent.post(run, numbered([*tokens("a", "b"), {"type": "token", "text": 7}, *tokens("c")]))
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_event" and "events[2]" in r.json()["detail"] and "$.text" in r.json()["detail"]
    assert len(await stored(server, run)) == 2


async def test_an_empty_batch_is_a_heartbeat(agent: Agent):
    run = await agent.run()
    r = await agent.post(run, [])
    assert r.status_code == 200, r.text
    assert r.json() == {
        "run_id": run,
        "accepted": 0,
        "skipped": 0,
        "last_n": 0,
        "controls": [],
        "cursor": 0,
        "status": "running",
    }


async def test_events_after_the_run_finished_are_refused(agent: Agent):
    run = await agent.run()
    await agent.post(run, numbered([{"type": "run.finished", "status": "failed", "error": "their tool broke"}]))
    r = await agent.post(run, numbered(tokens("late"), start=2))
    assert r.status_code == 409 and r.json()["code"] == "already_finished", r.text


async def test_a_run_finished_in_the_batch_of_its_last_step_counts_that_step_in_its_totals(server, agent: Agent):
    run = await agent.run()
    tool = [
        {"type": "tool.started", "call_id": "c1", "tool": "lookup", "arguments": {}},
        {"type": "tool.finished", "call_id": "c1", "tool": "lookup", "result": "ok"},
    ]
    first = numbered([*step(0, "a ", "b"), *tool])
    assert (await agent.post(run, first)).status_code == 200
    last = numbered([*step(1, "c ", "d ", "e"), {"type": "run.finished", "status": "succeeded"}], len(first) + 1)
    assert (await agent.post(run, last)).status_code == 200  # the step and the run's end in one batch
    finished = (await stored(server, run))[-1]
    totals = finished["totals"]
    assert (totals["steps"], totals["tool_calls"], totals["output_tokens"], totals["input_tokens"]) == (2, 1, 5, 10)
