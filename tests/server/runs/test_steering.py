"""Steering a running agent: a message interrupts its answer, or waits for the current step."""

from __future__ import annotations

import time

from tests.harness.identity import make_key


def _of(run: str, kind: str):
    return lambda m: m.get("run_id") == run and m.get("type") == kind


async def _message(server, run: str, text: str, mode: str, token: str | None = None):
    async with server.client(token) as c:
        return await c.post(f"/api/runs/{run}/messages", json={"text": text, "mode": mode})


def _answer_of_step(events: list[dict], index: int) -> str:
    started = next(i for i, e in enumerate(events) if e["type"] == "step.started" and e["index"] == index)
    finished = next(i for i, e in enumerate(events) if e["type"] == "step.finished" and e["index"] == index)
    return "".join(e["text"] for e in events[started:finished] if e["type"] == "token")


async def test_an_interrupt_cuts_the_stream_within_a_second_and_the_run_goes_on_with_the_message(server):
    w = await server.watcher()
    run = await server.start_run({"tokens": 100_000, "rate": 50})
    await w.subscribe(run)
    await w.wait_for(lambda m: m.get("run_id") == run and m.get("type") == "token")
    sent = time.monotonic()
    r = await _message(server, run, "stop and say hello", "interrupt")
    assert r.status_code == 202 and r.json()["status"] == "accepted", r.text
    cut = await w.wait_for(lambda m: _of(run, "step.finished")(m) and m["index"] == 0)
    assert time.monotonic() - sent < 1.0
    assert cut["finish_reason"] == "interrupted"
    events = await w.until_finished(run)
    types = [e["type"] for e in events]
    received = next(e for e in events if e["type"] == "message.received")
    assert received["text"] == "stop and say hello" and received["mode"] == "interrupt"
    assert received["by"]["id"].startswith("key:")
    second_step = next(i for i, e in enumerate(events) if e["type"] == "step.started" and e["index"] == 1)
    assert types.index("step.finished") < types.index("message.received") < second_step
    assert _answer_of_step(events, 0)  # the partial answer was kept
    assert _answer_of_step(events, 1) == 'You said: "stop and say hello"'
    assert events[-1]["status"] == "succeeded" and events[-1]["totals"]["steps"] == 2
    await w.close()


async def test_a_queued_message_waits_for_the_step_and_then_keeps_the_run_going(server):
    w = await server.watcher()
    run = await server.start_run({"tokens": 40, "rate": 100, "tool_calls": 1, "tool_seconds": 0.5})
    await w.subscribe(run)
    await w.wait_for(_of(run, "tool.started"))
    r = await _message(server, run, "also check the logs", "queue")
    assert r.status_code == 202
    events = await w.until_finished(run)
    types = [e["type"] for e in events]
    # delivered after the tool step, before the next step starts; nothing was cut
    assert types.index("tool.finished") < types.index("message.received")
    assert all(e["finish_reason"] != "interrupted" for e in events if e["type"] == "step.finished")
    assert events[-1]["status"] == "succeeded"
    await w.close()


async def test_a_message_after_the_last_step_makes_the_agent_answer_it(server):
    w = await server.watcher()
    run = await server.start_run({"tokens": 120, "rate": 60})  # 2 s: still streaming when the message comes
    await w.subscribe(run)
    await w.wait_for(_of(run, "token"))
    reply = await w.request({"type": "message", "run": run, "text": "one more thing", "mode": "queue"})
    assert reply["type"] == "ack" and reply["status"] == "accepted", reply
    events = await w.until_finished(run)
    assert len(_answer_of_step(events, 0).split()) == 120  # the first answer was not cut
    assert _answer_of_step(events, 1) == 'You said: "one more thing"'
    await w.close()


async def test_a_message_to_a_run_waiting_for_approval_comes_after_the_decision(server):
    w = await server.watcher()
    run = await server.start_run({"tokens": 3, "approvals": 1})
    await w.subscribe(run)
    requested = await w.wait_for(_of(run, "approval.requested"))
    assert (await _message(server, run, "hurry up", "interrupt")).status_code == 202
    async with server.client() as c:
        await c.post(f"/api/runs/{run}/approvals/{requested['approval_id']}", json={"decision": "approve"})
    events = await w.until_finished(run)
    types = [e["type"] for e in events]
    assert types.index("approval.resolved") < types.index("tool.finished") < types.index("message.received")
    await w.close()


async def test_messages_to_runs_that_are_not_running_are_refused(server):
    events = await server.run_to_end({"tokens": 2})
    run = events[0]["run_id"]
    r = await _message(server, run, "too late", "queue")
    assert r.status_code == 409 and r.json()["code"] == "already_finished"
    r = await _message(server, "0" * 21, "anyone?", "queue")
    assert r.status_code == 404 and r.json()["code"] == "unknown_run"
    r = await _message(server, run, "   ", "queue")
    assert r.status_code == 400


async def test_a_viewer_may_not_send_messages(server):
    w = await server.watcher()
    run = await server.start_run({"tokens": 100_000, "rate": 50})
    await w.subscribe(run)
    viewer = await make_key(server, "default", "viewer", "steering-viewer")
    r = await _message(server, run, "hi", "interrupt", token=viewer)
    assert r.status_code == 403
    async with server.client() as c:
        await c.post(f"/api/runs/{run}/cancel", json={})
    events = await w.until_finished(run)
    assert "message.received" not in [e["type"] for e in events]
    await w.close()


async def test_an_interrupt_before_the_first_token_goes_on_with_the_message(server):
    w = await server.watcher()
    run = await server.start_run({"tokens": 5, "ttft": 30})
    await w.subscribe(run)
    await w.wait_for(_of(run, "step.started"))
    assert (await _message(server, run, "never mind", "interrupt")).status_code == 202
    events = await w.until_finished(run)
    first = next(e for e in events if e["type"] == "step.finished")
    assert first["finish_reason"] == "interrupted" and _answer_of_step(events, 0) == ""
    assert _answer_of_step(events, 1) == 'You said: "never mind"'
    assert events[-1]["status"] == "succeeded", events[-1]
    await w.close()
