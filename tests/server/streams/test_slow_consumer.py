"""Slow consumers are cut off (resync, 1013, a dropped SSE stream; or by the ping timeout), named in
the log and counted, while fast watchers keep their pace.

Loopback sockets buffer megabytes in the kernel, so these runs send ~8 MB (8,000 tokens padded to
1,000 characters) and the stalled watcher pins a 4 KiB receive buffer: the server's sends really block.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket

from runwatch.agents.offline.model import scenario_text
from tests.harness.sse_probe import dropped_by_server, events_of, metric, read_stream, stalled_reader
from tests.harness.waiting import eventually
from tests.harness.watcher import assert_contiguous, text_of

# The first token waits a moment, so both watchers are caught up (live) before the stream starts;
# 4 s of streaming gives the stalled watcher's blocked send many publishes to fall behind on.
BIG_RUN = {"tokens": 8_000, "token_chars": 1_000, "ttft": 0.5, "rate": 2_000}
#: ``tcpi_state`` of an established TCP connection (Linux's ``TCP_ESTABLISHED``).
ESTABLISHED = 1
SETTINGS = {
    "RUNWATCH_COALESCE_MS": "0",
    "RUNWATCH_WS_MAX_LAG": "200",
    "RUNWATCH_WS_FRAME_EVENTS": "50",
    "RUNWATCH_MAX_OUTPUT_BYTES": str(16 * 2**20),  # the ~8 MB answer is over the 4 MiB default
}


async def _fast_and_stalled(srv) -> tuple:
    """A reading watcher and one that never reads, both following one big run."""
    fast = await srv.watcher()
    stalled = await srv.watcher(read=False, max_queue=1, rcvbuf=4096)
    run = await srv.start_run(BIG_RUN)
    await fast.subscribe(run)
    await stalled.send({"type": "subscribe", "run": run, "after": 0, "id": 1})
    return fast, stalled, run


async def _connections(srv) -> int:
    async with srv.client() as c:
        return (await c.get("/api/health")).json()["connections"]


async def test_a_stalled_watcher_is_closed_1013_while_a_fast_one_gets_everything(make_server, frame_path):
    # (at debug: ws.disconnected, with its close code, is a debug line)
    srv = make_server(SETTINGS | {"RUNWATCH_WS_SEND_TIMEOUT": "1", "RUNWATCH_LOG_LEVEL": "debug"} | frame_path)
    fast, stalled, run = await _fast_and_stalled(srv)

    events = await fast.until_finished(run, timeout=60)
    assert_contiguous(events)
    assert text_of(events) == "".join(scenario_text(8_000, 1_000))

    async def stalled_gone() -> bool:
        return await _connections(srv) == 1

    await eventually(stalled_gone, timeout=10)
    stalled.start_reading()
    closed = await stalled.wait_closed(timeout=10)
    # The server closes with 1013; whether that close frame reaches a client whose receive window is
    # full is up to the network, so the client sees 1013 or, when it could not be delivered, 1006.
    assert closed.code in (1013, 1006), closed
    assert len(stalled.events(run)) < len(events)
    cut = [line for line in srv.log_lines() if line.get("event") == "ws.disconnected" and line["code"] == 1013]
    assert len(cut) == 1 and cut[0]["reason"] == "slow consumer"
    assert any(line.get("event") == "ws.slow_consumer" for line in srv.log_lines())
    await fast.close()


async def test_a_watcher_that_falls_behind_gets_resync_and_resumes_from_it(make_server, frame_path):
    srv = make_server(SETTINGS | {"RUNWATCH_WS_SEND_TIMEOUT": "60"} | frame_path)
    fast, lagging, run = await _fast_and_stalled(srv)
    everything = await fast.until_finished(run, timeout=60)

    lagging.start_reading()  # the lagging watcher catches up on what was in flight, then is told to resync
    resync = await lagging.wait_for(lambda m: m.get("type") == "resync", timeout=30)
    before = lagging.events(run)
    assert_contiguous(before)
    assert resync == {
        "type": "resync",
        "run": run,
        "after": before[-1]["seq"],
        "epoch": resync["epoch"],
        "reason": "slow_consumer",
    }
    assert len(before) < len(everything)

    ack = await lagging.subscribe(run, after=resync["after"])
    assert ack["epoch"] == resync["epoch"]
    rest = await lagging.until_finished(run, timeout=30)
    assert before + rest[len(before) :] == everything
    await fast.close()
    await lagging.close()


async def test_watchers_that_leave_mid_stream_harm_no_one(make_server, frame_path):
    """Closing cleanly or dropping the TCP connection while frames are written straight to it."""
    srv = make_server({"RUNWATCH_COALESCE_MS": "0"} | frame_path)
    run = await srv.start_run({"tokens": 3_000, "rate": 1_500})
    stayers = [await srv.watcher() for _ in range(2)]
    leavers = [await srv.watcher() for _ in range(4)]
    for w in stayers + leavers:
        await w.subscribe(run)

    async def streaming() -> bool:
        return all(len(w.events(run)) > 100 for w in leavers)

    await eventually(streaming, timeout=20)
    await leavers[0].close()
    await leavers[1].close()
    leavers[2].ws.transport.abort()
    leavers[3].ws.transport.abort()

    for w in stayers:
        events = await w.until_finished(run, timeout=30)
        assert_contiguous(events)
        assert text_of(events) == "".join(scenario_text(3_000))

    async def only_stayers() -> bool:
        return await _connections(srv) == 2

    await eventually(only_stayers, timeout=10)
    assert not [line for line in srv.log_lines() if line.get("level") in ("error", "critical")]
    assert "Traceback" not in srv.logs()
    for w in stayers:
        await w.close()


async def test_a_stalled_sse_reader_is_cut_counted_and_logged_while_a_fast_one_gets_everything(make_server):
    srv = make_server(SETTINGS | {"RUNWATCH_WS_SEND_TIMEOUT": "1"})
    run = await srv.start_run(BIG_RUN)
    stalled = stalled_reader(srv, run)
    async with srv.client() as c:
        body = await read_stream(c, run)
    events = events_of(body)
    assert_contiguous(events)
    assert text_of(events) == "".join(scenario_text(8_000, 1_000))

    async def cut() -> bool:
        return await metric(srv, "runwatch_ws_slow_consumers_total", action="disconnect", transport="sse") == 1

    await eventually(cut, timeout=15)
    assert await asyncio.to_thread(dropped_by_server, stalled, 5.0)
    stalled.close()
    lines = srv.log_lines()
    [line] = [x for x in lines if x.get("event") == "sse.slow_consumer"]
    assert line["reason"] == "send_timeout" and line["run_id"] == run
    assert sorted(x["ended"] for x in lines if x.get("event") == "sse.closed") == ["finished", "slow_consumer"]
    assert await metric(srv, "runwatch_sse_streams") == 0
    assert "Traceback" not in srv.logs()


async def test_a_websocket_cut_by_the_ping_timeout_is_logged_as_a_slow_consumer_and_counted(make_server):
    srv = make_server({"RUNWATCH_HEARTBEAT": "0.5", "RUNWATCH_LOG_LEVEL": "debug"})  # ws.disconnected is a debug line
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + f"Authorization: Bearer {srv.token}\r\n".encode()
        + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    # From now on the client reads nothing and answers no ping.

    async def gone() -> bool:
        return await _connections(srv) == 0

    await eventually(gone, timeout=10)
    lines = srv.log_lines()
    [slow] = [x for x in lines if x.get("event") == "ws.slow_consumer"]
    assert slow["reason"] == "ping_timeout"
    [closed] = [x for x in lines if x.get("event") == "ws.disconnected"]
    assert closed["code"] == 1011 and "ping timeout" in closed["reason"]
    assert await metric(srv, "runwatch_ws_slow_consumers_total", action="disconnect", transport="ws") == 1
    assert await metric(srv, "runwatch_ws_connections_closed_total", reason="slow_consumer") == 1
    assert await metric(srv, "runwatch_ws_connections_closed_total", reason="client") == 0
    writer.close()


def _stalled_websocket(srv, run: str) -> socket.socket:
    """A raw WebSocket client that subscribes to ``run`` and then never reads (4 KiB receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", srv.port))
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + f"Authorization: Bearer {srv.token}\r\n".encode()
        + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # the handshake's answer only, byte by byte: nothing after it is read
    assert head.startswith(b"HTTP/1.1 101"), head
    payload = json.dumps({"type": "subscribe", "run": run, "after": 0}).encode()
    mask = os.urandom(4)  # a client's frames are masked (RFC 6455, 5.3)
    sock.sendall(bytes((0x81, 0x80 | len(payload))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    return sock


def _tcp_state(sock: socket.socket) -> int:
    """The kernel's state of this TCP connection (``tcpi_state``: 1 is ESTABLISHED)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


async def test_a_stalled_watcher_cut_off_is_dropped_not_left_holding_its_buffers(make_server):
    """Its close frame cannot be sent (its window is full): without a drop, the server would keep the
    connection and its buffers until the client reads again, which a frozen client never does."""
    srv = make_server(SETTINGS | {"RUNWATCH_WS_SEND_TIMEOUT": "1"})
    run = await srv.start_run(BIG_RUN)
    sock = _stalled_websocket(srv, run)
    assert _tcp_state(sock) == ESTABLISHED

    async def cut() -> bool:
        return await metric(srv, "runwatch_ws_slow_consumers_total", action="disconnect", transport="ws") == 1

    await eventually(cut, timeout=30)

    async def dropped() -> bool:
        return _tcp_state(sock) != ESTABLISHED

    await eventually(dropped, timeout=5)
    sock.close()
