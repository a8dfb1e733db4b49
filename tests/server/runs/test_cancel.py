"""Cancellation: within 1 s wherever the run is, idempotent, 409 once finished."""

from __future__ import annotations

import asyncio
import time

from tests.harness.waiting import eventually

CANCEL_BUDGET = 1.0


async def _cancel_and_time(server, watcher, run: str) -> tuple[float, list[dict]]:
    started = time.monotonic()
    async with server.client() as c:
        r = await c.post(f"/api/runs/{run}/cancel", json={})
        assert r.status_code == 202 and r.json() == {"id": run, "status": "cancelling"}
    events = await watcher.until_finished(run, timeout=5)
    return time.monotonic() - started, events


async def _health(server) -> dict:
    async with server.client() as c:
        return (await c.get("/api/health")).json()


async def test_cancel_mid_stream_lands_within_a_second_and_closes_the_model_stream(server):
    w = await server.watcher()
    run = await server.start_run({"tokens": 100_000, "rate": 50})
    await w.subscribe(run)
    await w.wait_for(lambda m: m.get("run_id") == run and m.get("type") == "token")
    assert (await _health(server))["offline_streams"] >= 1
    elapsed, events = await _cancel_and_time(server, w, run)
    assert elapsed < CANCEL_BUDGET
    final = events[-1]
    assert final["type"] == "run.finished" and final["status"] == "cancelled" and final["error"] is None
    step_end = [e for e in events if e["type"] == "step.finished"]
    assert step_end[-1]["finish_reason"] == "cancelled"

    async def no_streams_left() -> bool:
        return (await _health(server))["offline_streams"] == 0

    await eventually(no_streams_left, timeout=2)
    await w.close()


async def test_cancel_mid_tool_cancels_the_tool_and_runs_its_cleanup(server):
    w = await server.watcher()
    run = await server.start_run({"tokens": 10, "tool_calls": 1, "tool_seconds": 60})
    await w.subscribe(run)
    await w.wait_for(lambda m: m.get("run_id") == run and m.get("type") == "status")
    elapsed, events = await _cancel_and_time(server, w, run)
    assert elapsed < CANCEL_BUDGET
    types = [e["type"] for e in events]
    finished = next(e for e in events if e["type"] == "tool.finished")
    assert finished["error"] == "cancelled"
    cleanup = [e for e in events if e["type"] == "status" and "released" in e["message"]]
    assert cleanup and types.index("status", types.index("tool.started")) < types.index("tool.finished")
    assert events[-1]["status"] == "cancelled"
    await w.close()


async def test_a_cancelled_step_counts_the_tokens_that_came(server):
    """The model reports usage last: a cut stream has none, so the chunks that came are counted."""
    w = await server.watcher()
    run = await server.start_run({"tokens": 100_000, "rate": 200, "chunk_tokens": 1})
    await w.subscribe(run)
    await w.wait_for(lambda m: m.get("run_id") == run and m.get("type") == "token")
    _, events = await _cancel_and_time(server, w, run)
    streamed = sum(len(e["text"].split()) for e in events if e["type"] == "token")
    (step,) = [e for e in events if e["type"] == "step.finished"]
    assert step["usage"]["estimated"] is True and step["usage"]["output_tokens"] >= streamed > 0
    assert events[-1]["totals"]["output_tokens"] == step["usage"]["output_tokens"]
    async with server.client() as c:
        assert (await c.get(f"/api/runs/{run}")).json()["output_tokens"] == step["usage"]["output_tokens"]
    await w.close()


async def test_cancel_while_queued(make_server):
    srv = make_server({"RUNWATCH_MAX_RUNNING": "1"}, in_process=True)
    w = await srv.watcher()
    blocker = await srv.start_run({"tokens": 100_000, "rate": 20})
    queued = await srv.start_run({"tokens": 5})
    await w.subscribe(queued)
    await w.wait_for(lambda m: m.get("run_id") == queued and m.get("type") == "run.queued")
    elapsed, events = await _cancel_and_time(srv, w, queued)
    assert elapsed < CANCEL_BUDGET
    assert [e["type"] for e in events] == ["run.queued", "run.cancel_requested", "run.finished"]
    assert events[1]["by"]["id"].startswith("key:")  # who asked: the local admin's key
    assert events[-1]["status"] == "cancelled"
    async with srv.client() as c:
        assert (await c.post(f"/api/runs/{blocker}/cancel", json={})).status_code == 202
    await w.close()


async def test_cancel_is_idempotent(server):
    w = await server.watcher()
    run = await server.start_run({"tokens": 100_000, "rate": 20})
    await w.subscribe(run)
    async with server.client() as c:
        replies = await asyncio.gather(*(c.post(f"/api/runs/{run}/cancel", json={}) for _ in range(3)))
        assert [r.status_code for r in replies] == [202] * 3
        await w.until_finished(run, timeout=5)
        again = await c.post(f"/api/runs/{run}/cancel", json={})
        assert again.status_code == 202 and again.json() == {"id": run, "status": "cancelled"}
    assert sum(e["type"] == "run.finished" for e in w.events(run)) == 1
    await w.close()


async def test_cancelling_a_run_that_ended_otherwise_answers_409_and_unknown_404(server):
    w = await server.watcher()
    run = await server.start_run({"tokens": 3})
    await w.subscribe(run)
    await w.until_finished(run)
    async with server.client() as c:
        r = await c.post(f"/api/runs/{run}/cancel", json={})
        assert r.status_code == 409 and r.json()["detail"] == f"run {run} already finished (succeeded)"
        assert (await c.post("/api/runs/no-such-run/cancel")).status_code == 404
    await w.close()


async def test_cancel_over_the_websocket(server):
    w = await server.watcher()
    run = await server.start_run({"tokens": 100_000, "rate": 20})
    await w.subscribe(run)
    ack = await w.request({"type": "cancel", "run": run})
    assert ack == {"type": "ack", "id": ack["id"], "run": run, "status": "cancelling"}
    await w.until_finished(run, timeout=2)
    again = await w.request({"type": "cancel", "run": run})
    assert again["type"] == "ack" and again["status"] == "cancelled"
    done = await server.start_run({"tokens": 1})
    await w.subscribe(done)
    await w.until_finished(done)
    refused = await w.request({"type": "cancel", "run": done})
    assert refused["type"] == "error" and refused["code"] == "already_finished"
    await w.close()


async def test_a_run_over_its_timeout_fails_with_a_clear_error(make_server):
    srv = make_server({"RUNWATCH_RUN_TIMEOUT": "1"}, in_process=True)
    w = await srv.watcher()
    run = await srv.start_run({"tokens": 1000, "rate": 100})
    await w.subscribe(run)
    final = (await w.until_finished(run, timeout=5))[-1]
    assert final["status"] == "failed" and final["error"] == "timed out after 1 s"
    await w.close()


async def test_cancelling_a_full_speed_run_leaves_the_server_up(make_server):
    """The model stream is closed while the server is writing it: the write fails, the process lives."""
    srv = make_server()
    w = await srv.watcher()
    run = await srv.start_run({"tokens": 1_000_000, "rate": 0})
    await w.subscribe(run)
    await w.wait_for(lambda m: m.get("run_id") == run and m.get("type") == "token")
    _, events = await _cancel_and_time(srv, w, run)
    assert events[-1]["status"] == "cancelled"
    assert (await _health(srv))["status"] == "ok"
    assert srv.proc.poll() is None
    await w.close()
