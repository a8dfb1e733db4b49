"""Watching runs over the WebSocket: identical streams, resume by seq, the runs feed, coalescing, SSE."""

from __future__ import annotations

import asyncio
import json

from runwatch.agents.offline.model import scenario_text
from tests.harness.waiting import eventually
from tests.harness.watcher import assert_contiguous, text_of

SCENARIO = {"tokens": 200, "rate": 400, "tool_calls": 2, "tool_seconds": 0.3}


async def test_two_watchers_get_identical_ordered_events(server_each_path):
    server = server_each_path
    a, b = await server.watcher(), await server.watcher()
    run = await server.start_run(SCENARIO)
    await a.subscribe(run)
    await b.subscribe(run)
    events_a = await a.until_finished(run)
    events_b = await b.until_finished(run)
    assert events_a == events_b
    assert_contiguous(events_a)
    types = [e["type"] for e in events_a]
    assert types[:3] == ["run.queued", "run.started", "step.started"]
    assert types.count("tool.started") == types.count("tool.finished") == 2
    assert types.count("step.started") == types.count("step.finished") == 3
    assert any(e["type"] == "status" and e["call_id"] for e in events_a)
    assert events_a[-1]["status"] == "succeeded"
    assert text_of(events_a) == "".join(scenario_text(200))
    await a.close()
    await b.close()


async def test_events_carry_payloads_of_their_type(server):
    w = await server.watcher()
    run = await server.start_run({"tokens": 5, "tool_calls": 1, "tool_seconds": 0})
    await w.subscribe(run)
    events = {e["type"]: e for e in await w.until_finished(run)}
    assert events["run.queued"]["agent"] == "demo" and events["run.queued"]["offline"] is True
    assert events["step.started"]["model"] == "runwatch-offline"
    assert events["tool.started"]["tool"] == "wait" and events["tool.started"]["arguments"] == {"seconds": 0.0}
    assert events["tool.finished"]["call_id"] == events["tool.started"]["call_id"]
    assert events["tool.finished"]["error"] is None and "waited" in events["tool.finished"]["result"]
    step = events["step.finished"]
    assert step["usage"]["output_tokens"] == 5 and step["usage"]["input_tokens"] > 0 and step["ttft"] > 0
    totals = events["run.finished"]["totals"]
    assert totals["tool_calls"] == 1 and totals["steps"] == 2 and totals["output_tokens"] > 5
    assert all(isinstance(e["ts"], float) and e["run_id"] == run for e in events.values())
    await w.close()


async def test_reconnect_with_last_seq_gets_exactly_what_was_missed(server):
    run = await server.start_run({"tokens": 300, "rate": 100})
    first = await server.watcher()
    await first.subscribe(run)
    await first.wait_for(lambda m: m.get("run_id") == run and m.get("seq", 0) >= 20)
    await first.close()
    seen = first.events(run)
    last = seen[-1]["seq"]
    assert seen[-1]["type"] != "run.finished", "the run must still be going when the watcher leaves"

    second = await server.watcher()
    await second.subscribe(run, after=last)
    rest = await second.until_finished(run)
    assert_contiguous(rest, start=last + 1)
    assert_contiguous(seen + rest)
    assert text_of(seen + rest) == "".join(scenario_text(300))
    await second.close()


async def test_subscribing_after_the_run_finished_replays_the_rest(server):
    run = await server.start_run({"tokens": 30, "rate": 300})
    live = await server.watcher()
    await live.subscribe(run)
    expected = await live.until_finished(run)
    half = len(expected) // 2
    late = await server.watcher()
    await late.subscribe(run, after=half)
    assert await late.until_finished(run) == expected[half:]
    await live.close()
    await late.close()


async def test_replay_walks_from_the_store_into_the_live_log_without_gaps(make_server):
    # A 64-event log: small enough that early events leave memory, large enough (320 ms at 200 tok/s)
    # that a watcher on a busy machine does not fall out of it and get a resync instead.
    srv = make_server({"RUNWATCH_LOG_CAPACITY": "64", "RUNWATCH_COALESCE_MS": "0"}, in_process=True)
    run = await srv.start_run({"tokens": 400, "rate": 200})
    early = await srv.watcher()
    await early.subscribe(run)
    await early.wait_for(lambda m: m.get("run_id") == run and m.get("seq", 0) >= 150)
    late = await srv.watcher()
    await late.subscribe(run, after=0)  # seq 1..~86 are only in the store by now
    got = await late.until_finished(run)
    assert_contiguous(got)
    assert got == await early.until_finished(run)
    assert text_of(got) == "".join(scenario_text(400))
    await early.close()
    await late.close()


async def test_the_runs_feed_streams_lifecycle_and_step_events_of_every_run(server):
    feed = await server.watcher()
    await feed.subscribe("*")
    runs = [await server.start_run({"tokens": 3}) for _ in range(3)]
    for run in runs:
        await feed.wait_for(lambda m, run=run: m.get("run_id") == run and m.get("type") == "run.finished")
    for run in runs:
        assert [e["type"] for e in feed.events(run)] == ["run.queued", "run.started", "step.finished", "run.finished"]
    assert not any(m.get("type") == "token" for m in feed.messages)
    await feed.close()


async def test_the_runs_feed_counts_tool_calls_without_carrying_their_results(server):
    feed = await server.watcher()
    await feed.subscribe("*")
    run = await server.start_run({"tokens": 3, "tool_calls": 2, "parallel": True})
    await feed.wait_for(lambda m: m.get("run_id") == run and m.get("type") == "run.finished")
    steps = [e for e in feed.events(run) if e["type"] == "step.finished"]
    assert [s["tool_calls"] for s in steps] == [2, 0]
    assert not [e for e in feed.events(run) if e["type"].startswith("tool.")]
    await feed.close()


async def test_start_over_the_websocket_then_watch(server):
    w = await server.watcher()
    ack = await w.request({"type": "start", "agent": "demo", "input": "what is 6*7?"})
    assert ack["type"] == "ack" and ack["status"] == "queued"
    await w.subscribe(ack["run"])
    events = await w.until_finished(ack["run"])
    calls = [e for e in events if e["type"] == "tool.finished"]
    assert calls and calls[0]["tool"] == "calculator" and calls[0]["result"] == 42
    assert "42" in text_of(events)
    await w.close()


async def test_backlog_arrives_as_arrays_of_events_in_one_frame(make_server):
    srv = make_server({"RUNWATCH_COALESCE_MS": "0"}, in_process=True)
    run = await srv.start_run({"tokens": 400})
    first = await srv.watcher()
    await first.subscribe(run)
    await first.until_finished(run)
    w = await srv.watcher()
    await w.subscribe(run, after=0)
    events = await w.until_finished(run)
    assert len(events) > 400 and w.frames < len(events) / 5
    await first.close()
    await w.close()


async def test_frames_stop_taking_events_at_ws_frame_bytes(make_server, frame_path):
    """Live and replayed alike; an event bigger than the limit travels alone."""
    srv = make_server({"RUNWATCH_COALESCE_MS": "0", "RUNWATCH_WS_FRAME_BYTES": "4096"} | frame_path, in_process=True)
    small = await srv.start_run({"tokens": 300, "token_chars": 100, "rate": 0, "ttft": 0.5})
    big = await srv.start_run({"tokens": 20, "token_chars": 6000, "rate": 0, "ttft": 0.5})
    live = await srv.watcher()
    await live.subscribe(small)
    await live.subscribe(big)
    await live.until_finished(small)
    await live.until_finished(big)
    replay = await srv.watcher()
    await replay.subscribe(small)
    await replay.subscribe(big)
    for w in (live, replay):
        for run, tokens, chars in ((small, 300, 100), (big, 20, 6000)):
            events = await w.until_finished(run)
            assert_contiguous(events)
            assert text_of(events) == "".join(scenario_text(tokens, chars))
        # A frame is closed once its events pass 4096 bytes; the brackets and commas of the
        # array come on top, and a 6 KB token event is a frame of its own.
        assert max(size for size in w.frame_sizes if size < 6000) <= 4096 + 64
        alone = [size for size in w.frame_sizes if size > 4096 + 64]
        assert len(alone) == 20 and max(alone) < 6200, alone
    await live.close()
    await replay.close()


async def test_hello_then_heartbeats_on_an_idle_connection(make_server):
    srv = make_server({"RUNWATCH_HEARTBEAT": "0.3"}, in_process=True)
    w = await srv.watcher()
    hello = await w.wait_for(lambda m: m["type"] == "hello")
    assert hello["offline"] is True and hello["heartbeat"] == 0.3
    assert (await w.wait_for(lambda m: m["type"] == "heartbeat", timeout=3))["ts"] > 0
    await w.send({"type": "ping", "id": "p1"})
    assert (await w.wait_for(lambda m: m["type"] == "pong"))["id"] == "p1"
    await w.close()


async def test_token_coalescing_cuts_events_but_not_text(make_server):
    scenario = {"tokens": 600, "rate": 2000}
    counts = {}
    for window in ("0", "25"):
        srv = make_server({"RUNWATCH_COALESCE_MS": window}, in_process=True)
        w = await srv.watcher()
        run = await srv.start_run(scenario)
        await w.subscribe(run)
        events = await w.until_finished(run)
        assert_contiguous(events)
        assert text_of(events) == "".join(scenario_text(600))
        counts[window] = sum(e["type"] == "token" for e in events)
        assert sum(e["deltas"] for e in events if e["type"] == "token") == 600
        await w.close()
    assert counts["0"] == 600
    assert counts["25"] < 600 / 5


async def test_sse_streams_a_run_and_resumes_from_last_event_id(server):
    run = await server.start_run({"tokens": 50, "rate": 500})
    async with server.client() as c:
        received = []
        async with c.stream("GET", f"/api/runs/{run}/stream") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            event_id = None
            async for line in r.aiter_lines():
                if line.startswith("id:"):
                    event_id = int(line[3:])
                if line.startswith("data:"):
                    received.append(json.loads(line[5:]))
                    assert received[-1]["seq"] == event_id
                    if len(received) == 20:
                        break
        async with c.stream("GET", f"/api/runs/{run}/stream", headers={"Last-Event-ID": "20"}) as r:
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    received.append(json.loads(line[5:]))
        assert_contiguous(received)
        assert received[-1]["type"] == "run.finished"
        assert text_of(received) == "".join(scenario_text(50))


async def test_sse_of_an_unknown_run_is_404(server):
    async with server.client() as c:
        r = await c.get("/api/runs/nope/stream")
        assert r.status_code == 404 and "no run" in r.json()["detail"]


async def test_rest_replay_pages_through_all_events(server):
    run = await server.start_run({"tokens": 120})
    w = await server.watcher()
    await w.subscribe(run)
    live = await w.until_finished(run)
    async with server.client() as c:
        pages, after = [], 0
        while True:
            body = (await c.get(f"/api/runs/{run}/events", params={"after": after, "limit": 25})).json()
            pages.extend(body["events"])
            after = body["next_after"]
            if not body["more"]:
                break
    assert pages == live
    await w.close()


async def test_many_watchers_on_many_runs_all_see_everything(server_each_path):
    server = server_each_path
    runs = [await server.start_run({"tokens": 80, "rate": 800}) for _ in range(4)]
    watchers = [await server.watcher() for _ in range(6)]
    for w in watchers:
        for run in runs:
            await w.subscribe(run)
    for run in runs:
        results = await asyncio.gather(*(w.until_finished(run) for w in watchers))
        assert all(r == results[0] for r in results)
        assert_contiguous(results[0])
    for w in watchers:
        await w.close()


async def test_a_dead_connection_is_found_by_heartbeat_and_cleaned_up(make_server):
    srv = make_server({"RUNWATCH_HEARTBEAT": "0.5"}, in_process=True)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + f"Authorization: Bearer {srv.token}\r\n".encode()
        + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")

    async def connections() -> int:
        async with srv.client() as c:
            return (await c.get("/api/health")).json()["connections"]

    assert await connections() == 1
    # The client now says nothing, not even pongs: the server must notice and drop it.
    await eventually(lambda: _is(connections, 0), timeout=5)
    writer.close()


async def _is(counter, value: int) -> bool:
    return await counter() == value
