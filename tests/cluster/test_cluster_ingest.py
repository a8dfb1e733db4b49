"""External runs on many instances: an agent's batches, registrations and polls may reach any
instance, and so may people's buttons; every event is stored exactly once, in order, and every
control reaches the agent wherever it polls."""

from __future__ import annotations

import asyncio
import secrets
import signal
import time

from runwatch.agents.ingest.limits import MAX_PENDING_CONTROLS
from tests.conftest import CLUSTER_LEASE as LEASE
from tests.harness.sse_probe import metric
from tests.harness.waiting import eventually
from tests.server.ingest.agent import Agent, assert_stored_as_sent, numbered, step, stored, tokens


async def _waiting(server) -> bool:
    return await metric(server, "runwatch_ingest_long_polls") == 1


async def agents_on(servers, tenant: str | None = None) -> list[Agent]:
    """One agent key, talking to each server in turn."""
    tenant = tenant or f"t{secrets.token_hex(4)}"
    first = await Agent.of(servers[0], tenant)
    return [first] + [Agent(s, first.key) for s in servers[1:]]


async def test_batches_of_one_run_alternating_between_instances_are_stored_once_in_order(cluster):
    a, b = cluster(2)
    on_a, on_b = await agents_on([a, b])
    watcher = await b.watcher()
    try:
        run = await on_a.run(lease_seconds=5)
        await watcher.subscribe(run)
        sent = numbered([*step(0, "one", "two"), *tokens("three", "four", "five"), *step(1, "six")])
        batches = [sent[0:2], sent[2:4], sent[4:6], sent[6:8], sent[8:]]
        for i, batch in enumerate(batches):
            here, there = (on_a, on_b) if i % 2 == 0 else (on_b, on_a)
            r = await here.post(run, batch)
            assert r.status_code == 200 and r.json()["accepted"] == len(batch), r.text
            again = await there.post(run, batch)  # its answer lost: retried through the other instance
            assert again.status_code == 200 and again.json()["skipped"] == len(batch), again.text
        end = numbered([{"type": "run.finished", "status": "succeeded"}], start=len(sent) + 1)
        assert (await on_b.post(run, end)).json()["status"] == "succeeded"
        seen = await watcher.until_finished(run, timeout=10)
    finally:
        await watcher.close()
        for agent in (on_a, on_b):
            await agent.close()
    for server in (a, b):
        events = await stored(server, run)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert_stored_as_sent(events, [*sent, *end])
    assert [e["seq"] for e in seen] == [e["seq"] for e in events]


async def test_a_registration_retried_on_two_instances_at_once_makes_one_run(cluster):
    a, b = cluster(2)
    on_a, on_b = await agents_on([a, b])
    try:
        answers = await asyncio.gather(*(agent.register("same-job") for agent in (on_a, on_b, on_a, on_b)))
    finally:
        for agent in (on_a, on_b):
            await agent.close()
    assert sorted(r.status_code for r in answers) == [200, 200, 200, 201], [r.text for r in answers]
    assert len({r.json()["run_id"] for r in answers}) == 1
    events = await stored(a, answers[0].json()["run_id"])
    assert [e["type"] for e in events] == ["run.queued", "run.started"]


async def test_a_cancel_pressed_on_one_instance_reaches_a_long_poll_on_another_at_once(cluster):
    a, b = cluster(2)
    on_a, _ = await agents_on([a, b])
    try:
        run = await on_a.run()
        poll = asyncio.create_task(on_a.controls(run, after=0, wait=25))
        await eventually(lambda: _waiting(a), what="the agent's long poll waiting on a")
        async with b.client() as c:
            pressed = time.monotonic()
            r = await c.post(f"/api/runs/{run}/cancel")
        assert r.status_code == 202, r.text
        answer = await asyncio.wait_for(poll, 5)
        took = time.monotonic() - pressed
    finally:
        await on_a.close()
    (control,) = answer.json()["controls"]
    assert control["type"] == "cancel" and took < 1.0, (control, took)


async def test_an_approval_decided_on_one_instance_reaches_the_agent_through_another(cluster):
    a, b = cluster(2)
    on_a, on_b = await agents_on([a, b])
    try:
        run = await on_a.run()
        asked = {"type": "approval.requested", "approval_id": "ap1", "call_id": "c1", "tool": "rm"}
        await on_a.post(run, numbered([{**asked, "arguments": {"path": "/tmp/x"}, "reason": "cleanup"}]))
        decision = {"decision": "approve", "arguments": {"path": "/tmp/y"}}
        async with b.client() as c:
            r = await c.post(f"/api/runs/{run}/approvals/ap1", json=decision)
        assert r.status_code == 200, r.text
        answer = await on_a.controls(run, after=0)
    finally:
        for agent in (on_a, on_b):
            await agent.close()
    (control,) = answer.json()["controls"]
    assert (control["type"], control["decision"], control["arguments"]) == ("approval", "approved", {"path": "/tmp/y"})


async def test_a_run_whose_instance_and_agent_died_ends_agent_lost_on_another(cluster):
    a, b = cluster(2)
    on_a, _ = await agents_on([a, b])
    watcher = await b.watcher()
    try:
        run = await on_a.run(lease_seconds=2)
        await watcher.subscribe(run)
        await on_a.post(run, numbered(tokens("then both went away")))
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        events = await watcher.until_finished(run, timeout=10)
    finally:
        await watcher.close()
        await on_a.close()
    posted = next(e for e in events if e["type"] == "token")
    end = events[-1]
    assert (end["type"], end["status"], end["error"]) == ("run.finished", "failed", "agent_lost")
    assert 2.0 <= end["ts"] - posted["ts"] < 2.0 + 1.5  # its lease, then b's keeper within a look or two


async def test_an_external_run_outliving_the_instances_lease_is_no_orphan_to_take_over(cluster):
    (a,) = cluster(1)
    on_a, *_ = await agents_on([a])
    try:
        run = await on_a.run(lease_seconds=10)
        waited = await on_a.controls(run, wait=LEASE + 0.5)  # (its agent waits for controls: none come)
        assert waited.json()["controls"] == [] and waited.json()["status"] == "running"
        (b,) = cluster(1)  # its first sweep for orphans comes one instance lease after it starts
        on_b = Agent(b, on_a.key)
        waited = await on_b.controls(run, wait=LEASE + 1.0)
        assert waited.json()["status"] == "running", waited.text
        r = await on_b.post(run, numbered(tokens("still mine")))
        await on_b.close()
    finally:
        await on_a.close()
    assert r.status_code == 200 and r.json()["status"] == "running", r.text
    assert "run.finished" not in [e["type"] for e in await stored(a, run)]


async def test_what_the_agent_took_on_one_instance_counts_on_another(cluster):
    a, b = cluster(2)
    on_a, *_ = await agents_on([a, b])
    try:
        run = await on_a.run()
        async with b.client() as c:
            for i in range(MAX_PENDING_CONTROLS):
                r = await c.post(f"/api/runs/{run}/messages", json={"text": f"m{i}", "mode": "queue"})
                assert r.status_code == 202, r.text
            refused = await c.post(f"/api/runs/{run}/messages", json={"text": "too many", "mode": "queue"})
            page = (await on_a.controls(run, after=0)).json()
            await on_a.controls(run, after=page["cursor"])  # taken, on a
            taken = await c.post(f"/api/runs/{run}/messages", json={"text": "one more", "mode": "queue"})
    finally:
        await on_a.close()
    assert refused.status_code == 429 and len(page["controls"]) == MAX_PENDING_CONTROLS, refused.text
    assert taken.status_code == 202, taken.text


async def test_a_run_ended_through_one_instance_leaves_no_copy_on_another(cluster):
    a, b = cluster(2)
    on_a, on_b = await agents_on([a, b])
    try:
        run = await on_a.run()
        await on_a.post(run, numbered(tokens("held on a")))
        assert await metric(a, "runwatch_ingest_runs") == 1
        ended = await on_b.post(run, numbered([{"type": "run.finished", "status": "succeeded"}], start=2))
        assert ended.json()["status"] == "succeeded", ended.text
        await eventually(lambda: _copies(a, 0), what="a dropping its copy of the run b ended")
    finally:
        for agent in (on_a, on_b):
            await agent.close()


async def _copies(server, n: int) -> bool:
    return await metric(server, "runwatch_ingest_runs") == n
