"""What people do to an external run — cancel, approve with edited arguments, send a message —
reaches its agent as controls, through REST exactly as for runwatch's own runs."""

from __future__ import annotations

import asyncio
import time

from tests.harness.sse_probe import metric
from tests.harness.waiting import eventually
from tests.server.ingest.agent import Agent, numbered, stored, tokens


async def _polls(server, n: int) -> bool:
    return await metric(server, "runwatch_ingest_long_polls") == n


SCHEMA = {
    "type": "object",
    "properties": {"path": {"type": "string"}, "force": {"type": "boolean"}},
    "required": ["path"],
    "additionalProperties": False,
}


async def test_a_cancel_pressed_over_rest_reaches_the_agent_s_long_poll_at_once(server, agent: Agent):
    run = await agent.run()
    await agent.post(run, numbered(tokens("working")))
    before = await metric(server, "runwatch_ingest_long_polls")  # (the server is shared: others' polls)
    poll = asyncio.create_task(agent.controls(run, after=0, wait=25))
    await eventually(lambda: _polls(server, before + 1), what="the agent's long poll waiting")
    async with server.client() as c:
        pressed = time.monotonic()
        r = await c.post(f"/api/runs/{run}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "cancelling", r.text
    answer = await asyncio.wait_for(poll, 5)
    assert time.monotonic() - pressed < 2
    (control,) = answer.json()["controls"]
    assert control["type"] == "cancel" and control["mode"] == "now" and control["by"]["id"].startswith("key:")
    ended = await agent.post(run, numbered([{"type": "run.finished", "status": "cancelled"}], start=2))
    assert ended.json()["status"] == "cancelled"
    types = [e["type"] for e in await stored(server, run)]
    assert types[-2:] == ["run.cancel_requested", "run.finished"] and types.count("run.cancel_requested") == 1
    assert control["c"] == len(types) - 1  # (its c: the seq of its run.cancel_requested)


async def test_an_approval_decided_over_rest_with_edited_arguments_reaches_the_agent(server, agent: Agent):
    run = await agent.run()
    asked = {
        "type": "approval.requested",
        "approval_id": "ap_deploy",
        "call_id": "call_1",
        "tool": "deploy",
        "arguments": {"path": "/srv/app"},
        "reason": "deploys to production",
        "schema": SCHEMA,
    }
    r = await agent.post(run, numbered([asked]))
    assert r.json()["status"] == "waiting", r.text
    url = f"/api/runs/{run}/approvals/ap_deploy"
    async with server.client() as c:
        refused = await c.post(url, json={"decision": "approve", "arguments": {"path": 5}})
        approved = await c.post(url, json={"decision": "approve", "arguments": {"path": "/srv/canary"}})
        late = await c.post(url, json={"decision": "deny"})
    assert refused.status_code == 422 and refused.json()["code"] == "invalid_arguments", refused.text
    assert "path" in refused.json()["detail"]
    assert approved.status_code == 200, approved.text
    assert late.status_code == 409 and late.json()["code"] == "already_decided", late.text
    (control,) = (await agent.controls(run, after=0)).json()["controls"]
    assert {k: control[k] for k in ("type", "approval_id", "call_id", "decision", "arguments")} == {
        "type": "approval",
        "approval_id": "ap_deploy",
        "call_id": "call_1",
        "decision": "approved",
        "arguments": {"path": "/srv/canary"},
    }
    taken = await agent.controls(run, after=control["c"])
    assert taken.json()["controls"] == [] and taken.json()["status"] == "running"


async def test_a_steering_message_reaches_the_agent_and_is_on_the_run(server, agent: Agent):
    run = await agent.run()
    async with server.client() as c:
        r = await c.post(f"/api/runs/{run}/messages", json={"text": "focus on Q3", "mode": "interrupt"})
    assert r.status_code == 202, r.text
    answer = await agent.post(run, numbered(tokens("ok")))
    (control,) = answer.json()["controls"]
    assert (control["type"], control["text"], control["mode"]) == ("message", "focus on Q3", "interrupt")
    received = [e for e in await stored(server, run) if e["type"] == "message.received"]
    assert [(e["text"], e["seq"]) for e in received] == [("focus on Q3", control["c"])]


async def test_controls_stay_pending_until_the_agent_says_it_took_them(server, agent: Agent):
    run = await agent.run()
    async with server.client() as c:
        for text in ("first", "second"):
            await c.post(f"/api/runs/{run}/messages", json={"text": text})
    both = (await agent.controls(run)).json()
    again = (await agent.post(run, [])).json()
    assert [x["text"] for x in both["controls"]] == [x["text"] for x in again["controls"]] == ["first", "second"]
    first_c = both["controls"][0]["c"]
    rest = (await agent.post(run, [], after=first_c)).json()
    assert [x["text"] for x in rest["controls"]] == ["second"] and rest["cursor"] == both["cursor"]


async def test_a_cancel_the_agent_did_not_declare_is_refused(server, agent: Agent):
    run = await agent.run(capabilities={"cancel": False, "approve": False, "message": False})
    async with server.client() as c:
        r = await c.post(f"/api/runs/{run}/cancel")
    assert r.status_code == 409 and r.json()["code"] == "not_supported", r.text


async def test_an_approval_nobody_decides_expires_and_its_agent_is_told(make_server):
    srv = make_server({"RUNWATCH_APPROVAL_TIMEOUT": "1"})
    agent = await Agent.of(srv, "acme")
    try:
        run = await agent.run()
        asked = {"type": "approval.requested", "call_id": "c1", "tool": "deploy", "arguments": {}, "reason": "prod"}
        r = await agent.post(run, numbered([asked]))
        assert r.json()["status"] == "waiting", r.text
        answer = (await agent.controls(run, wait=5)).json()
    finally:
        await agent.close()
    (control,) = answer["controls"]
    assert (control["type"], control["call_id"], control["decision"]) == ("approval", "c1", "expired")
    assert control["approval_id"].startswith("ap_") and answer["status"] == "running"  # (an id runwatch made)
