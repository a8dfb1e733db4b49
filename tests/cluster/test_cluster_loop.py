"""People in the loop across instances: decisions and messages sent to any instance reach the run's
owner; a run waiting for approval outlives its instance (its approval stays open)."""

from __future__ import annotations

import signal

from tests.cluster.instances import by_name, started_on
from tests.conftest import CLUSTER_LEASE as LEASE
from tests.harness.watcher import assert_contiguous


def _of(run: str, kind: str):
    return lambda m: m.get("run_id") == run and m.get("type") == kind


async def test_a_decision_sent_to_another_instance_reaches_the_owner(cluster):
    servers = cluster(2)
    run = await servers[0].start_run({"tokens": 3, "approvals": 1}, agent="careful")
    owner = by_name(servers, await started_on(servers[0], run))
    other = next(s for s in servers if s is not owner)
    w = await other.watcher()
    await w.subscribe(run)
    requested = await w.wait_for(_of(run, "approval.requested"))
    async with other.client() as c:
        url = f"/api/runs/{run}/approvals/{requested['approval_id']}"
        bad = await c.post(url, json={"decision": "approve", "arguments": {"version": 1}})
        assert bad.status_code == 422 and bad.json()["code"] == "invalid_arguments", bad.text
        r = await c.post(url, json={"decision": "deny", "message": "use the other cluster"})
        assert r.status_code == 200, r.text
        again = await c.post(url, json={"decision": "approve"})
        assert again.status_code == 409 and again.json()["code"] in ("already_decided", "already_finished")
    events = await w.until_finished(run)
    resolved = next(e for e in events if e["type"] == "approval.resolved")
    assert resolved["decision"] == "denied" and resolved["message"] == "use the other cluster"
    assert events[-1]["status"] == "succeeded"
    await w.close()


async def test_a_message_sent_to_another_instance_interrupts_the_owner(cluster):
    servers = cluster(2)
    run = await servers[0].start_run({"tokens": 100_000, "rate": 50}, agent="steady")
    owner = by_name(servers, await started_on(servers[0], run))
    other = next(s for s in servers if s is not owner)
    w = await other.watcher()
    await w.subscribe(run)
    await w.wait_for(_of(run, "token"))
    reply = await w.request({"type": "message", "run": run, "text": "wrap it up", "mode": "interrupt"})
    assert reply["type"] == "ack", reply
    events = await w.until_finished(run)
    assert next(e["finish_reason"] for e in events if e["type"] == "step.finished") == "interrupted"
    assert next(e for e in events if e["type"] == "message.received")["text"] == "wrap it up"
    assert events[-1]["status"] == "succeeded"
    await w.close()


async def test_a_waiting_run_survives_its_instance_and_its_approval_stays_open(cluster):
    servers = cluster(2)
    run = await servers[0].start_run({"tokens": 3, "approvals": 1}, agent="careful")
    owner = by_name(servers, await started_on(servers[0], run))
    survivor = next(s for s in servers if s is not owner)
    w = await survivor.watcher()
    await w.subscribe(run)
    requested = await w.wait_for(_of(run, "approval.requested"))
    owner.proc.send_signal(signal.SIGKILL)
    owner.proc.wait()
    await w.close()  # read it afresh from the survivor
    w = await survivor.watcher()
    await w.subscribe(run)
    resumed = await w.wait_for(_of(run, "run.resumed"), timeout=LEASE * 4)
    assert resumed["instance"] == survivor.env["RUNWATCH_INSTANCE"]
    async with survivor.client() as c:
        assert (await c.get(f"/api/runs/{run}")).json()["status"] == "waiting"
        r = await c.post(f"/api/runs/{run}/approvals/{requested['approval_id']}", json={"decision": "approve"})
        assert r.status_code == 200, r.text
    events = await w.until_finished(run, timeout=20)
    assert_contiguous(events)
    assert [e["approval_id"] for e in events if e["type"] == "approval.requested"] == [requested["approval_id"]]
    assert next(e for e in events if e["type"] == "tool.finished")["result"]["deployed"] == "1.1.0"
    assert events[-1]["status"] == "succeeded"
    await w.close()
