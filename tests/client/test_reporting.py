"""What an agent reports through runwatch.client is stored in order and seen live; how it leaves
the run's block decides how the run ends."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time

import pytest

from runwatch.client import AsyncRunwatch, Run, Runwatch
from tests.conftest import Server
from tests.harness.watcher import assert_contiguous, text_of
from tests.server.ingest.agent import stored

WORDS = [f"w{i} " for i in range(300)]


async def test_a_run_s_tokens_are_stored_in_order_and_seen_live_by_a_watcher(server: Server, arw: AsyncRunwatch):
    watcher = await server.watcher()
    try:
        async with arw.run(agent="their-agent", input="count to 300", model="m1") as run:
            await watcher.subscribe(run.id)
            run.step("m1")
            run.token("Hello ")
            first = await watcher.wait_for(lambda m: m.get("run_id") == run.id and m.get("type") == "token")
            assert first["text"] == "Hello "  # seen while the run is still going
            for word in WORDS:
                run.token(word)
            run.step_done({"input_tokens": 3, "output_tokens": 301}, "stop")
        seen = await watcher.until_finished(run.id)
    finally:
        await watcher.close()
    kept = await stored(server, run.id)
    assert_contiguous(seen)
    assert text_of(seen) == text_of(kept) == "Hello " + "".join(WORDS)
    assert [e["type"] for e in kept if e["type"] != "token"] == [
        "run.queued",
        "run.started",
        "step.started",
        "step.finished",
        "run.finished",
    ]
    assert kept[-1]["status"] == "succeeded" and run.dropped_tokens == 0 and not arw.errors


async def test_an_exception_in_the_block_ends_the_run_failed_with_its_text(server: Server, rw: Runwatch):
    with pytest.raises(ValueError, match="the ledger is empty"):
        with rw.run(agent="their-agent", input="close the books") as run:
            run.status("reading the ledger", 0.5)
            raise ValueError("the ledger is empty")
    finished = (await stored(server, run.id))[-1]
    assert (finished["type"], finished["status"]) == ("run.finished", "failed")
    assert finished["error"] == "ValueError: the ledger is empty"


async def test_a_tool_call_reports_its_progress_and_result(server: Server, rw: Runwatch):
    with rw.run(agent="their-agent", input="fetch it") as run:
        with run.tool("call_1", "fetch", {"url": "https://example.com"}) as t:
            t.progress("downloading", 0.5)
            t.result({"bytes": 512})
    kept = [e for e in await stored(server, run.id) if e["type"] in ("tool.started", "status", "tool.finished")]
    assert [e["type"] for e in kept] == ["tool.started", "status", "tool.finished"]
    assert (kept[1]["call_id"], kept[1]["progress"]) == ("call_1", 0.5)
    assert kept[2]["result"] == {"bytes": 512} and kept[2]["error"] is None


async def test_a_batch_the_server_refuses_is_reported_and_the_run_goes_on(server: Server, rw: Runwatch):
    with rw.run(agent="their-agent", input="fetch a lot") as run:
        run.token("x" * 40_000)  # past a token's bound: sent as three
        run.flush()
        with run.tool("call_1", "fetch", {"blob": "y" * 70_000}):  # past 64 KiB: refused
            pass
        run.flush()
        run.token("after")
    kept = await stored(server, run.id)
    assert text_of(kept) == "x" * 40_000 + "after"
    assert kept[-1]["status"] == "succeeded"
    assert_contiguous(kept)
    (refused,) = [e for e in rw.errors if getattr(e, "code", "") == "field_too_large"]
    assert refused.status == 413


async def test_an_idle_run_keeps_its_lease(server: Server, arw: AsyncRunwatch):
    watcher = await server.watcher()
    try:
        async with arw.run(agent="their-agent", input="think slowly", lease_seconds=1) as run:
            await watcher.subscribe(run.id)
            with pytest.raises(TimeoutError):  # three leases long with nothing to report
                await watcher.wait_for(lambda m: m.get("type") == "run.finished", timeout=3)
        finished = await watcher.wait_for(lambda m: m.get("type") == "run.finished")
    finally:
        await watcher.close()
    assert finished["status"] == "succeeded"


async def test_a_run_never_entered_does_not_hold_up_a_flush_or_close(server: Server, key: str):
    rw = AsyncRunwatch(server.url, key)
    rw.run(agent="their-agent", input="made, never entered")
    async with rw.run(agent="their-agent", input="entered") as run:
        run.token("done")
    await asyncio.wait_for(rw.flush(), 10)
    await asyncio.wait_for(rw.aclose(), 10)
    assert not rw.errors


async def test_every_token_of_a_burst_reaches_a_watcher_with_no_event_after_it(server: Server, arw: AsyncRunwatch):
    watcher = await server.watcher()
    sent = ""
    try:
        async with arw.run(agent="their-agent", input="bursts") as run:
            await watcher.subscribe(run.id)
            run.step("m1")
            for burst in range(5):
                for i in range(400):
                    text = f"{burst}.{i} "
                    run.token(text)
                    sent += text
                # nothing else is reported until the watcher has every token: none may wait for a next event
                upto = len(sent)
                await watcher.wait_for(lambda m, n=upto: len(text_of(watcher.events(run.id))) >= n, timeout=10)
            run.step_done(None)
        seen = await watcher.until_finished(run.id)
    finally:
        await watcher.close()
    assert text_of(seen) == sent


async def test_a_full_buffer_drops_tokens_counts_them_and_keeps_every_other_event():
    with socket.socket() as s:  # a port nothing listens on: nothing the client holds is ever stored
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    rw = Runwatch(url, "no-key", buffer_bytes=16 << 10, block_timeout=0.2, flush_timeout=0.5)
    waited = 0.0
    try:
        with rw.run(agent="their-agent", input="too much") as run:  # unregistered after 0.5 s: goes on
            for i in range(400):
                started = time.monotonic()
                run.token(f"{i:0>99}")  # 100 bytes each: 40 KB in all
                waited = max(waited, time.monotonic() - started)
                if i % 100 == 0:
                    run.status(f"at {i}")
            assert run.dropped_tokens > 200 and rw.dropped_tokens == run.dropped_tokens
            assert rw.buffered_bytes <= (16 << 10) + 4 * 200  # the budget, and the statuses always kept
            events = run._link.outbox.take(10_000, 1 << 30)[0]
    finally:
        rw.close()
    assert waited >= 0.15  # from synchronous code, a token finding the budget full waited for room first
    assert [e["message"] for e in events if e["type"] == "status"] == ["at 0", "at 100", "at 200", "at 300"]
    assert sum(e["deltas"] for e in events if e["type"] == "token") == 400 - run.dropped_tokens


async def test_tokens_from_many_threads_all_arrive(server: Server, rw: Runwatch):
    def report(run: Run, thread: int) -> None:
        for i in range(3000):
            run.token(f"<{thread}.{i}>")

    with rw.run(agent="their-agent", input="from four threads") as run:
        threads = [threading.Thread(target=report, args=(run, t)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    kept = await stored(server, run.id)
    text = "".join(e["text"] for e in kept if e["type"] == "token")
    for t in range(4):  # each thread's tokens whole, and in its order
        mine = [int(x) for x in re.findall(rf"<{t}\.(\d+)>", text)]
        assert mine == list(range(3000))
    assert sum(e.get("deltas", 1) for e in kept if e["type"] == "token") == 12000 and run.dropped_tokens == 0
