"""What people do to a run in runwatch — cancel, approve with edited arguments, send a message —
reaches the agent's code through runwatch.client."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

from runwatch.client import AsyncRunwatch, Cancelled, Message, Runwatch
from tests.conftest import Server
from tests.server.ingest.agent import stored

SCHEMA = {
    "type": "object",
    "properties": {"path": {"type": "string"}},
    "required": ["path"],
    "additionalProperties": False,
}


async def test_a_cancel_over_rest_sets_run_cancelled_and_ends_the_run_cancelled(server: Server, rw: Runwatch):
    started: concurrent.futures.Future[str] = concurrent.futures.Future()
    called = threading.Event()

    def agent() -> bool:
        with rw.run(agent="their-agent", input="work until stopped") as run:
            run.on_cancel(called.set)
            run.token("working")
            started.set_result(run.id)
            return run.cancelled.wait(20)

    job = asyncio.create_task(asyncio.to_thread(agent))
    run_id = await asyncio.wrap_future(started)
    async with server.client() as c:
        r = await c.post(f"/api/runs/{run_id}/cancel")
    assert r.status_code == 202, r.text
    assert await job is True and called.is_set()
    finished = (await stored(server, run_id))[-1]
    assert (finished["type"], finished["status"]) == ("run.finished", "cancelled")


async def test_an_approval_over_rest_with_edited_arguments_returns_them(server: Server, arw: AsyncRunwatch):
    watcher = await server.watcher()
    try:
        async with arw.run(agent="their-agent", input="deploy") as run:
            await watcher.subscribe(run.id)
            asking = asyncio.create_task(
                run.request_approval("call_1", "deploy", {"path": "/srv/app"}, "deploys to production", SCHEMA)
            )
            asked = await watcher.wait_for(lambda m: m.get("type") == "approval.requested")
            async with server.client() as c:
                url = f"/api/runs/{run.id}/approvals/{asked['approval_id']}"
                r = await c.post(url, json={"decision": "approve", "arguments": {"path": "/srv/canary"}})
            assert r.status_code == 200, r.text
            decision = await asyncio.wait_for(asking, 10)
    finally:
        await watcher.close()
    assert decision.approved and decision.arguments == {"path": "/srv/canary"}
    assert asked["call_id"] == "call_1" and asked["schema"] == SCHEMA


async def test_a_message_over_rest_reaches_run_messages(server: Server, arw: AsyncRunwatch):
    async with arw.run(agent="their-agent", input="draft it", capabilities=["cancel", "message"]) as run:
        async with server.client() as c:
            r = await c.post(f"/api/runs/{run.id}/messages", json={"text": "focus on Q3", "mode": "interrupt"})
        assert r.status_code == 202, r.text
        run.token("ok")
        await run.flush()  # the events' answer carries the pending message (if the long poll did not)
        got = run.messages()
        assert [(m.text, m.mode) for m in got] == [("focus on Q3", "interrupt")]
        assert run.messages() == []  # handed over once


async def test_on_message_is_called_once_per_message_as_it_arrives(server: Server, arw: AsyncRunwatch):
    arrived: asyncio.Queue[Message] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    async with arw.run(agent="their-agent", input="draft it", capabilities=["message"]) as run:
        run.on_message(lambda m: loop.call_soon_threadsafe(arrived.put_nowait, m))
        async with server.client() as c:
            for text in ("first", "second"):
                r = await c.post(f"/api/runs/{run.id}/messages", json={"text": text, "mode": "queue"})
                assert r.status_code == 202, r.text
        got = [await asyncio.wait_for(arrived.get(), 10) for _ in range(2)]
        await run.flush()  # an answer carrying both again must not call the callback again
        assert [(m.text, m.mode) for m in got] == [("first", "queue"), ("second", "queue")]
        assert arrived.empty()
        assert [m.text for m in run.messages()] == ["first", "second"]


async def test_a_cancel_while_waiting_for_an_approval_ends_the_run_cancelled(server: Server, rw: Runwatch):
    started: concurrent.futures.Future[str] = concurrent.futures.Future()

    def agent() -> None:
        with rw.run(agent="their-agent", input="deploy") as run:
            started.set_result(run.id)
            run.request_approval("call_1", "deploy", {"path": "/srv/app"}, "deploys to production")
            raise AssertionError("not reached: the cancel ends the wait")

    job = asyncio.create_task(asyncio.to_thread(agent))
    run_id = await asyncio.wrap_future(started)
    watcher = await server.watcher()
    try:
        await watcher.subscribe(run_id)
        await watcher.wait_for(lambda m: m.get("type") == "approval.requested")
        async with server.client() as c:
            r = await c.post(f"/api/runs/{run_id}/cancel")
        assert r.status_code == 202, r.text
        await asyncio.wait_for(job, 10)
        finished = await watcher.wait_for(lambda m: m.get("type") == "run.finished")
    finally:
        await watcher.close()
    assert finished["status"] == "cancelled"


async def test_an_approval_asked_after_a_cancel_raises_cancelled_at_once(server: Server, arw: AsyncRunwatch):
    async with arw.run(agent="their-agent", input="deploy twice") as run:
        async with server.client() as c:
            r = await c.post(f"/api/runs/{run.id}/cancel")
        assert r.status_code == 202, r.text
        await asyncio.wait_for(asyncio.to_thread(run.cancelled.wait, 10), 11)
        with pytest.raises(Cancelled):
            await asyncio.wait_for(run.request_approval("call_2", "deploy", {"path": "/srv/app"}), 2)
    finished = (await stored(server, run.id))[-1]
    assert (finished["type"], finished["status"]) == ("run.finished", "cancelled")
