"""Tool approvals: a call that needs one waits for a person; approve, deny, edit, expire, cancel."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

from tests.harness.identity import make_key
from tests.harness.watcher import Watcher


def _of(run: str, kind: str):
    return lambda m: m.get("run_id") == run and m.get("type") == kind


async def _waiting(server, scenario: dict) -> tuple[Watcher, str, list[dict]]:
    """Start a scenario run, follow it, and return once every approval it asks for is requested."""
    w = await server.watcher()
    run = await server.start_run(scenario)
    await w.subscribe(run)
    count = scenario["approvals"] if scenario.get("parallel") else 1

    def requested() -> list[dict]:
        return [e for e in w.events(run) if e["type"] == "approval.requested"]

    await w.wait_for(lambda m: _of(run, "approval.requested")(m) and len(requested()) >= count)
    return w, run, requested()


async def _status(server, run: str) -> str:
    async with server.client() as c:
        return (await c.get(f"/api/runs/{run}")).json()["status"]


async def _decide(server, run: str, approval: str, body: dict, token: str | None = None):
    async with server.client(token) as c:
        return await c.post(f"/api/runs/{run}/approvals/{approval}", json=body)


async def test_a_call_that_needs_approval_waits_and_runs_once_approved(server):
    w, run, [requested] = await _waiting(server, {"tokens": 5, "approvals": 1})
    assert requested["tool"] == "deploy" and requested["arguments"] == {"version": "1.1.0"}
    assert requested["reason"] and requested["expires_at"] > 0 and requested["approval_id"]
    assert not [e for e in w.events(run) if e["type"] == "tool.started"]
    assert await _status(server, run) == "waiting"
    r = await _decide(server, run, requested["approval_id"], {"decision": "approve"})
    assert r.status_code == 200 and r.json()["decision"] == "approved", r.text
    events = await w.until_finished(run)
    resolved = next(e for e in events if e["type"] == "approval.resolved")
    assert resolved["decision"] == "approved" and resolved["by"]["id"].startswith("key:")
    assert resolved["arguments"] == {"version": "1.1.0"}
    finished = next(e for e in events if e["type"] == "tool.finished")
    assert finished["result"] == {"deployed": "1.1.0", "environment": "staging"} and not finished["denied"]
    assert events[-1]["status"] == "succeeded"
    assert await _status(server, run) == "succeeded"
    await w.close()


async def test_a_denial_message_is_what_the_model_gets(server):
    w, run, [requested] = await _waiting(server, {"tokens": 3, "approvals": 1})
    reply = await w.request(
        {"type": "deny", "run": run, "approval": requested["approval_id"], "message": "not on a Friday"}
    )
    assert reply["type"] == "ack" and reply["status"] == "denied", reply
    events = await w.until_finished(run)
    resolved = next(e for e in events if e["type"] == "approval.resolved")
    assert resolved["decision"] == "denied" and resolved["message"] == "not on a Friday"
    finished = next(e for e in events if e["type"] == "tool.finished")
    assert finished["denied"] and finished["result"] == "not on a Friday"
    answer = "".join(e["text"] for e in events if e["type"] == "token")
    assert "not on a Friday" in answer
    assert not [e for e in events if e["type"] == "status"]  # the deploy never ran
    await w.close()


async def test_edited_arguments_are_validated_then_used(server):
    w, run, [requested] = await _waiting(server, {"tokens": 3, "approvals": 1})
    approval = requested["approval_id"]
    bad = await _decide(server, run, approval, {"decision": "approve", "arguments": {"version": 7}})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_arguments", bad.text
    unknown = await _decide(server, run, approval, {"decision": "approve", "arguments": {"colour": "red"}})
    assert unknown.status_code == 422 and unknown.json()["code"] == "invalid_arguments"
    edited = {"version": "2.0.0", "environment": "production"}
    r = await _decide(server, run, approval, {"decision": "approve", "arguments": edited})
    assert r.status_code == 200, r.text
    events = await w.until_finished(run)
    assert next(e for e in events if e["type"] == "approval.resolved")["arguments"] == edited
    assert next(e for e in events if e["type"] == "tool.started")["arguments"] == edited
    assert next(e for e in events if e["type"] == "tool.finished")["result"] == {
        "deployed": "2.0.0",
        "environment": "production",
    }
    await w.close()


async def test_the_first_decision_wins_and_later_ones_are_already_decided(server):
    # A long answer after the deploy: the run is still going when the later decisions arrive.
    w, run, [requested] = await _waiting(server, {"tokens": 100_000, "rate": 50, "approvals": 1})
    approval = requested["approval_id"]
    answers = await asyncio.gather(
        _decide(server, run, approval, {"decision": "approve"}),
        _decide(server, run, approval, {"decision": "deny", "message": "no"}),
        _decide(server, run, approval, {"decision": "approve"}),
    )
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 409, 409], [r.text for r in answers]
    assert {r.json()["code"] for r in answers if r.status_code == 409} == {"already_decided"}
    again = await _decide(server, run, approval, {"decision": "deny"})
    assert again.status_code == 409 and again.json()["code"] == "already_decided"
    async with server.client() as c:
        await c.post(f"/api/runs/{run}/cancel", json={})
    events = await w.until_finished(run)
    assert len([e for e in events if e["type"] == "approval.resolved"]) == 1
    late = await _decide(server, run, approval, {"decision": "approve"})
    assert late.status_code == 409 and late.json()["code"] == "already_finished"
    await w.close()


async def test_parallel_approvals_are_decided_in_any_order(server):
    w, run, requested = await _waiting(server, {"tokens": 3, "approvals": 3, "parallel": True})
    assert len({e["approval_id"] for e in requested}) == 3 and len({e["call_id"] for e in requested}) == 3
    by_version = {e["arguments"]["version"]: e["approval_id"] for e in requested}
    await _decide(server, run, by_version["1.3.0"], {"decision": "approve"})
    await w.wait_for(lambda m: m.get("type") == "approval.resolved" and m.get("run_id") == run)
    assert await _status(server, run) == "waiting"
    await _decide(server, run, by_version["1.1.0"], {"decision": "deny", "message": "skip 1.1"})
    await _decide(server, run, by_version["1.2.0"], {"decision": "approve"})
    events = await w.until_finished(run)
    resolved = [e for e in events if e["type"] == "approval.resolved"]
    assert [e["decision"] for e in resolved] == ["approved", "denied", "approved"]
    assert [e["waiting"] for e in resolved] == [True, True, False]
    finished = {e["call_id"]: e for e in events if e["type"] == "tool.finished"}
    calls = {e["arguments"]["version"]: e["call_id"] for e in requested}
    assert finished[calls["1.1.0"]]["denied"] and finished[calls["1.1.0"]]["result"] == "skip 1.1"
    assert finished[calls["1.2.0"]]["result"]["deployed"] == "1.2.0"
    assert finished[calls["1.3.0"]]["result"]["deployed"] == "1.3.0"
    assert events[-1]["status"] == "succeeded"
    await w.close()


async def test_an_approval_expires_as_denied_and_waiting_is_not_run_time(make_server):
    server = make_server({"RUNWATCH_APPROVAL_TIMEOUT": "1.5", "RUNWATCH_RUN_TIMEOUT": "1"}, in_process=True)
    w, run, [requested] = await _waiting(server, {"tokens": 3, "approvals": 1})
    assert 1.0 < requested["expires_at"] - requested["ts"] <= 1.6
    events = await w.until_finished(run, timeout=10)
    resolved = next(e for e in events if e["type"] == "approval.resolved")
    assert resolved["decision"] == "expired" and resolved["by"] is None
    finished = next(e for e in events if e["type"] == "tool.finished")
    assert finished["denied"] and "1.5 s" in finished["result"]
    # 1.5 s of waiting on a run allowed 1 s: waiting did not count
    assert events[-1]["status"] == "succeeded", events[-1]
    await w.close()


async def test_cancel_while_waiting_ends_the_run(server):
    w, run, _ = await _waiting(server, {"tokens": 3, "approvals": 1})
    async with server.client() as c:
        r = await c.post(f"/api/runs/{run}/cancel", json={})
        assert r.status_code == 202
    events = await w.until_finished(run, timeout=5)
    assert events[-1]["status"] == "cancelled"
    assert not [e for e in events if e["type"] == "tool.started"]
    assert await _status(server, run) == "cancelled"
    await w.close()


async def test_a_viewer_may_not_decide(server):
    w, run, [requested] = await _waiting(server, {"tokens": 3, "approvals": 1})
    viewer = await make_key(server, "default", "viewer", "approvals-viewer")
    r = await _decide(server, run, requested["approval_id"], {"decision": "approve"}, token=viewer)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    vw = await server.watcher(viewer)
    reply = await vw.request({"type": "approve", "run": run, "approval": requested["approval_id"]})
    assert reply["type"] == "error" and reply["code"] == "forbidden"
    assert await _status(server, run) == "waiting"
    async with server.client() as c:
        await c.post(f"/api/runs/{run}/cancel", json={})
    await w.until_finished(run)
    await vw.close()
    await w.close()


async def test_unknown_approvals_and_runs_are_told_apart(server):
    w, run, _ = await _waiting(server, {"tokens": 3, "approvals": 1})
    r = await _decide(server, run, "ap_nope", {"decision": "approve"})
    assert r.status_code == 404 and r.json()["code"] == "unknown_approval"
    r = await _decide(server, "0" * 21, "ap_nope", {"decision": "approve"})
    assert r.status_code == 404 and r.json()["code"] == "unknown_run"
    r = await _decide(server, run, "ap_nope", {"decision": "maybe"})
    assert r.status_code == 400
    async with server.client() as c:
        await c.post(f"/api/runs/{run}/cancel", json={})
    await w.until_finished(run)
    await w.close()


async def test_a_waiting_run_shows_on_the_runs_feed(server):
    feed = await server.watcher()
    await feed.subscribe("*")
    w, run, [requested] = await _waiting(server, {"tokens": 3, "approvals": 1})
    await feed.wait_for(_of(run, "approval.requested"))
    await _decide(server, run, requested["approval_id"], {"decision": "approve"})
    await feed.wait_for(_of(run, "run.finished"))
    kinds = [m["type"] for m in feed.messages if m.get("run_id") == run]
    statuses = [k for k in kinds if k != "step.finished"]  # (it keeps counters live)
    assert statuses == ["run.queued", "run.started", "approval.requested", "approval.resolved", "run.finished"]
    await feed.close()
    await w.close()


def test_the_offline_model_asks_for_deploys_one_by_one_or_all_at_once():
    from runwatch.agents.offline.model import plan_reply

    base = [{"role": "system", "content": "s"}, {"role": "user", "content": json.dumps({"approvals": 2})}]
    first = plan_reply(base, {"deploy"})
    assert first.tool_calls == [("deploy", {"version": "1.1.0"})]
    parallel = [base[0], {"role": "user", "content": json.dumps({"approvals": 2, "parallel": True})}]
    assert [c[1]["version"] for c in plan_reply(parallel, {"deploy"}).tool_calls] == ["1.1.0", "1.2.0"]


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["crash", "restart"])
async def test_a_waiting_run_survives_a_crash_or_restart_of_its_only_instance(make_server, tmp_path, stop):
    env = {"RUNWATCH_AGENTS": "tests.harness.agents_resumable"}
    data = tmp_path / "stopping"
    srv = make_server(env=env, data_dir=data)
    w = await srv.watcher()
    run = await srv.start_run({"tokens": 3, "approvals": 1}, agent="careful")
    await w.subscribe(run)
    requested = await w.wait_for(_of(run, "approval.requested"))
    await w.close()
    srv.stop(stop)
    again = make_server(env=env, data_dir=data)
    w = await again.watcher()
    await w.subscribe(run)
    await w.wait_for(_of(run, "run.resumed"))
    assert await _status(again, run) == "waiting"
    r = await _decide(again, run, requested["approval_id"], {"decision": "approve"})
    assert r.status_code == 200, r.text
    events = await w.until_finished(run)
    assert [e["approval_id"] for e in events if e["type"] == "approval.requested"] == [requested["approval_id"]]
    assert events[-1]["status"] == "succeeded"
    await w.close()


async def test_a_waiting_run_lends_its_slot_to_other_runs(make_server):
    server = make_server({"RUNWATCH_MAX_RUNNING": "1"}, in_process=True)
    w, run, [requested] = await _waiting(server, {"tokens": 3, "approvals": 1})
    other = await server.start_run({"tokens": 3})
    await w.subscribe(other)
    assert (await w.until_finished(other))[-1]["status"] == "succeeded"  # ran while the first waited
    r = await _decide(server, run, requested["approval_id"], {"decision": "approve"})
    assert r.status_code == 200
    assert (await w.until_finished(run))[-1]["status"] == "succeeded"
    async with server.client() as c:
        health = (await c.get("/api/health")).json()
    assert health["running"] == 0 and health["queued"] == 0
    await w.close()


async def test_an_approved_call_runs_only_once_its_run_has_a_slot_again(make_server):
    server = make_server({"RUNWATCH_MAX_RUNNING": "1"}, in_process=True)
    w, run, requested = await _waiting(server, {"tokens": 3, "approvals": 2, "parallel": True})
    hog = await server.start_run({"tokens": 100_000, "rate": 50})  # takes the slot the waiting run lent
    await w.subscribe(hog)
    await w.wait_for(_of(hog, "token"))
    first = requested[0]
    assert (await _decide(server, run, first["approval_id"], {"decision": "approve"})).status_code == 200
    await w.wait_for(lambda m: _of(run, "approval.resolved")(m) and m["approval_id"] == first["approval_id"])
    await w.send({"type": "ping", "id": "after-decision"})  # a round trip: the deploy would have started
    await w.wait_for(lambda m: m.get("type") == "pong" and m.get("id") == "after-decision")
    assert not [e for e in w.events(run) if e["type"] == "tool.started"]  # no slot yet: it waits
    async with server.client() as c:
        await c.post(f"/api/runs/{hog}/cancel", json={})
    started = await w.wait_for(_of(run, "tool.started"))
    assert started["call_id"] == first["call_id"]
    await _decide(server, run, requested[1]["approval_id"], {"decision": "deny"})
    assert (await w.until_finished(run))[-1]["status"] == "succeeded"
    await w.close()
