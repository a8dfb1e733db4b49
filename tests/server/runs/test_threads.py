"""Threads: runs that continue one conversation; what to do when the thread is busy."""

from __future__ import annotations

import json

from tests.harness.identity import make_key


def _of(run: str, kind: str):
    return lambda m: m.get("run_id") == run and m.get("type") == kind


async def _start(server, text: str | dict, thread: str | None = None, if_busy: str | None = None, token=None):
    body: dict = {"agent": "demo", "input": text if isinstance(text, str) else json.dumps(text)}
    if thread is not None:
        body["thread"] = thread
    if if_busy is not None:
        body["if_busy"] = if_busy
    async with server.client(token) as c:
        return await c.post("/api/runs", json=body)


def _answer(events: list[dict]) -> str:
    last_step = max(e["index"] for e in events if e["type"] == "step.started")
    started = next(i for i, e in enumerate(events) if e["type"] == "step.started" and e["index"] == last_step)
    return "".join(e["text"] for e in events[started:] if e["type"] == "token")


async def _run(server, w, text, thread=None) -> tuple[str, list[dict]]:
    r = await _start(server, text, thread)
    assert r.status_code == 202, r.text
    run = r.json()["id"]
    await w.subscribe(run)
    return r.json()["thread"], await w.until_finished(run)


async def test_a_thread_of_three_runs_remembers_the_first(server):
    w = await server.watcher()
    thread, first = await _run(server, w, "My favourite colour is teal. What time is it?")
    assert first[0]["thread"] == thread and first[-1]["status"] == "succeeded"
    again, second = await _run(server, w, "What is 2 + 3?", thread)
    assert again == thread and second[0]["thread"] == thread
    assert "- **calculator** answered `5`" in _answer(second)
    _, third = await _run(server, w, "What did I tell you first?", thread)
    answer = _answer(third)
    assert "You asked: What did I tell you first?" in answer
    assert "My favourite colour is teal" in answer  # only the first run said so
    async with server.client() as c:
        listed = (await c.get(f"/api/threads/{thread}")).json()
    assert [r["id"] for r in listed["runs"]] == [first[0]["run_id"], second[0]["run_id"], third[0]["run_id"]]
    assert {r["thread"] for r in listed["runs"]} == {thread}
    await w.close()


async def test_a_run_without_a_thread_starts_its_own(server):
    r = await _start(server, {"tokens": 1})
    assert r.json()["thread"] and r.json()["thread"] == r.json()["id"]


async def test_a_busy_thread_rejects_by_default(server):
    w = await server.watcher()
    r = await _start(server, {"tokens": 100_000, "rate": 50})
    busy, thread = r.json()["id"], r.json()["thread"]
    refused = await _start(server, "hello again", thread)
    assert refused.status_code == 409 and refused.json()["code"] == "thread_busy", refused.text
    assert busy in refused.json()["detail"]
    async with server.client() as c:
        await c.post(f"/api/runs/{busy}/cancel", json={})
    await w.subscribe(busy)
    await w.until_finished(busy)
    await w.close()


async def test_if_busy_queue_runs_after_the_active_one(server):
    w = await server.watcher()
    r = await _start(server, {"tokens": 20, "rate": 40})
    first, thread = r.json()["id"], r.json()["thread"]
    await w.subscribe(first)
    queued = await _start(server, "What is 6 * 7?", thread, "queue")
    assert queued.status_code == 202, queued.text
    second = queued.json()["id"]
    await w.subscribe(second)
    ended = await w.wait_for(_of(first, "run.finished"))
    started = await w.wait_for(_of(second, "run.started"), timeout=20)
    assert ended["status"] == "succeeded" and started["ts"] >= ended["ts"]
    events = await w.until_finished(second)
    assert events[-1]["status"] == "succeeded"
    await w.close()


async def test_if_busy_interrupt_cancels_the_active_run_and_goes_on(server):
    w = await server.watcher()
    r = await _start(server, {"tokens": 100_000, "rate": 50})
    first, thread = r.json()["id"], r.json()["thread"]
    await w.subscribe(first)
    await w.wait_for(_of(first, "token"))
    r = await _start(server, "never mind that", thread, "interrupt")
    assert r.status_code == 202, r.text
    second = r.json()["id"]
    await w.subscribe(second)
    cancelled = await w.wait_for(_of(first, "run.finished"), timeout=5)
    assert cancelled["status"] == "cancelled"
    events = await w.until_finished(second)
    assert events[-1]["status"] == "succeeded"
    await w.close()


async def test_another_tenants_thread_is_unknown(server):
    r = await _start(server, {"tokens": 1})
    thread = r.json()["thread"]
    other = await make_key(server, "elsewhere", "operator", "threads-other")
    refused = await _start(server, "let me in", thread, token=other)
    assert refused.status_code == 404 and refused.json()["code"] == "unknown_thread"
    async with server.client(other) as c:
        r = await c.get(f"/api/threads/{thread}")
    assert r.status_code == 404 and r.json()["code"] == "unknown_thread"


async def test_the_websocket_start_continues_a_thread(server):
    w = await server.watcher()
    first = await w.request({"type": "start", "agent": "demo", "input": "Remember the word kumquat."})
    assert first["type"] == "ack" and first["thread"] == first["run"]
    await w.subscribe(first["run"])
    await w.until_finished(first["run"])
    second = await w.request({"type": "start", "agent": "demo", "input": "Which word?", "thread": first["thread"]})
    assert second["type"] == "ack" and second["thread"] == first["thread"]
    await w.subscribe(second["run"])
    events = await w.until_finished(second["run"])
    assert "kumquat" in _answer(events)
    await w.close()


async def test_an_admin_continuing_a_tenants_thread_starts_the_run_in_that_tenant(server):
    acme = await make_key(server, "acme-threads", "operator", "acme-operator")
    first = await _start(server, {"tokens": 1}, token=acme)
    thread = first.json()["thread"]
    second = await _start(server, "one more thing", thread, "queue")  # the local admin, of tenant default
    assert second.status_code == 202, second.text
    async with server.client(acme) as c:
        mine = await c.get(f"/api/runs/{second.json()['id']}")
        assert mine.status_code == 200 and mine.json()["tenant"] == "acme-threads"
        listed = (await c.get(f"/api/threads/{thread}")).json()
    assert [r["id"] for r in listed["runs"]] == [first.json()["id"], second.json()["id"]]
