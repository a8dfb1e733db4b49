"""``POST /api/ingest/events``: many runs' batches in one request, each applied as its own —
exactly once, in order, whole or not at all — and refused alone."""

from __future__ import annotations

from runwatch.agents.ingest.limits import MAX_BATCH_RUNS
from tests.server.ingest.agent import Agent, assert_stored_as_sent, numbered, sent_by_agent, step, stored, tokens


async def test_each_run_s_part_is_stored_once_in_order_and_answered_in_the_order_sent(server, agent: Agent):
    runs = [await agent.run() for _ in range(3)]
    sent = {run: numbered(step(0, f"{run[:4]} one", " two")) for run in runs}
    first = await agent.post_many(sent)
    again = await agent.post_many(sent)  # its answer was lost: the whole request sent again
    assert first.status_code == 200, first.text
    results = first.json()["results"]
    assert [r["run_id"] for r in results] == runs
    assert [(r["accepted"]["accepted"], r["accepted"]["last_n"]) for r in results] == [(4, 4)] * 3
    assert [r["accepted"]["skipped"] for r in again.json()["results"]] == [4] * 3
    for run in runs:
        assert_stored_as_sent(await stored(server, run), sent[run])


async def test_a_refused_part_leaves_the_other_runs_parts_applied(server, agent: Agent):
    good, gapped, reserved, ended = [await agent.run() for _ in range(4)]
    await agent.post(ended, numbered([{"type": "run.finished", "status": "succeeded"}]))
    r = await agent.post_many(
        {
            good: numbered(tokens("kept")),
            gapped: numbered(tokens("late"), start=3),
            reserved: numbered([{"type": "approval.resolved", "approval_id": "a", "decision": "approved"}]),
            ended: numbered(tokens("after the end"), start=2),
        }
    )
    assert r.status_code == 200, r.text
    answer = {x["run_id"]: x for x in r.json()["results"]}
    assert answer[good]["accepted"]["accepted"] == 1 and "error" not in answer[good]
    assert answer[gapped]["error"] == {
        "status_code": 409,
        "code": "gap",
        "detail": answer[gapped]["error"]["detail"],
        "expected_n": 1,
    }
    assert answer[reserved]["error"]["code"] == "reserved_type" and answer[reserved]["error"]["status_code"] == 422
    assert answer[ended]["error"]["code"] == "already_finished"
    assert [e["text"] for e in sent_by_agent(await stored(server, good))] == ["kept"]
    for run in (gapped, reserved):
        assert sent_by_agent(await stored(server, run)) == []


async def test_another_principal_s_run_is_refused_as_unknown(server, agent: Agent, tenant: str):
    other = await Agent.of(server, tenant)
    try:
        theirs = await other.run()
        r = await agent.post_many({theirs: numbered(tokens("not mine"))})
    finally:
        await other.close()
    assert r.json()["results"][0]["error"]["code"] == "unknown_run"
    assert sent_by_agent(await stored(server, theirs)) == []


async def test_a_request_with_a_run_twice_or_too_many_runs_is_refused_whole(server, agent: Agent):
    run = await agent.run()
    twice = await agent.http.post(
        "/api/ingest/events",
        json={"runs": [{"run_id": run, "events": numbered(tokens("a"))}, {"run_id": run, "events": []}]},
    )
    many = await agent.http.post(
        "/api/ingest/events", json={"runs": [{"run_id": f"r{i}", "events": []} for i in range(MAX_BATCH_RUNS + 1)]}
    )
    assert twice.status_code == 400 and twice.json()["code"] == "bad_request", twice.text
    assert many.status_code == 413 and many.json()["code"] == "batch_too_large", many.text
    assert sent_by_agent(await stored(server, run)) == []
