"""Odd, huge, binary and flooding WebSocket input: a clear error or a named close, never a 1011."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness.watcher import assert_contiguous


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"type": []}', "unknown_type"),
        ('{"type": {}}', "unknown_type"),
        ('{"type": "ping", "id": ' + _nested(1000) + "}", "bad_json"),  # past msgspec's nesting limit
        (b'{"type": "ping", "id": "\xff\xfe"}', "bad_json"),
        ('{"type": "subscribe", "run": "x", "after": 9223372036854775808}', "bad_message"),
    ],
)
async def test_odd_frames_get_an_error_and_the_connection_keeps_working(server, frame, code):
    w = await server.watcher()
    await w.send(frame) if isinstance(frame, str) else await w.ws.send(frame)
    error = await w.wait_for(lambda m: m["type"] == "error")
    assert error["code"] == code and len(error["message"]) < 400
    await w.send({"type": "ping", "id": "after"})
    await w.wait_for(lambda m: m["type"] == "pong" and m["id"] == "after")
    assert w.closed is None
    await w.close()


async def test_subscribing_beyond_the_end_of_a_finished_run_is_an_error(server):
    run = await server.start_run({"tokens": 3})
    w = await server.watcher()
    await w.subscribe(run)
    events = await w.until_finished(run)
    for after in (len(events) + 1, 2**63 - 1):
        reply = await w.request({"type": "subscribe", "run": run, "after": after})
        assert reply["type"] == "error" and reply["code"] == "after_beyond_head", reply
        assert f"has {len(events)} events" in reply["message"]
    assert (await w.subscribe(run, after=len(events)))["after"] == len(events)  # caught up: fine
    await w.close()


async def test_a_fast_client_that_reads_gets_every_reply_to_1000_pipelined_pings(server):
    w = await server.watcher()
    await asyncio.gather(*(w.send({"type": "ping", "id": i}) for i in range(1000)))
    await w.wait_for(lambda m: m["type"] == "pong" and m["id"] == 999, timeout=20)
    assert sorted(m["id"] for m in w.messages if m["type"] == "pong") == list(range(1000))
    assert w.closed is None
    await w.close()


async def test_a_flood_is_told_rate_limited_then_closed_1008_and_harms_no_one(make_server):
    srv = make_server({"RUNWATCH_WS_MESSAGE_RATE": "20", "RUNWATCH_WS_MESSAGE_BURST": "50"}, in_process=True)
    bystander = await srv.watcher()
    run = await srv.start_run({"tokens": 200, "rate": 200})
    await bystander.subscribe(run)
    flood = await srv.watcher()
    for i in range(500):
        try:
            await flood.send({"type": "ping", "id": i})
        except Exception:
            break
    limited = await flood.wait_for(lambda m: m["type"] == "error", timeout=10)
    assert limited["code"] == "rate_limited"
    assert (await flood.wait_closed()).code == 1008
    assert_contiguous(await bystander.until_finished(run))
    await bystander.close()


async def test_an_oversized_frame_is_logged_and_counted_as_1009(make_server):
    # ws.disconnected is a debug line
    srv = make_server({"RUNWATCH_WS_MAX_MESSAGE_BYTES": "1024", "RUNWATCH_LOG_LEVEL": "debug"})
    w = await srv.watcher()
    await w.send({"type": "start", "agent": "demo", "input": "x" * 5000})
    assert (await w.wait_closed()).code == 1009
    async with srv.client() as c:
        text = (await c.get("/metrics")).text
    assert 'runwatch_ws_connections_closed_total{reason="message_too_big"} 1.0' in text
    lines = [x for x in srv.log_lines() if x.get("event") == "ws.disconnected"]
    assert lines and lines[-1]["code"] == 1009
