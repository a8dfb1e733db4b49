"""No client, however it leaves, ends the server: writes to a gone peer are errors, never SIGPIPE.

Each test leaves mid-response the rudest way a client can: it shuts its socket down while the
server is writing (so the server's next writes meet a reset connection), then asks the server for
its health. The server must still be the same live process, answering.
"""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest

from tests.conftest import Server
from tests.harness.waiting import eventually

#: How many times each test walks out on the server; a write after a reset is a race, so more than once.
ROUNDS = 2


def _request(method: str, path: str, body: bytes = b"", token: str | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
    if token:
        head += f"authorization: Bearer {token}\r\n"
    return (head + f"content-length: {len(body)}\r\n\r\n").encode() + body


async def _read_then_walk_out(server: Server, request: bytes, nbytes: int = 1024) -> None:
    """Send ``request``, read ``nbytes`` of the response, then shut the socket down mid-read."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        await loop.sock_sendall(sock, request)
        got = 0
        while got < nbytes:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
            assert chunk, "the server closed before sending enough"
            got += len(chunk)
        sock.shutdown(socket.SHUT_RDWR)
    finally:
        sock.close()


async def _assert_alive(server: Server) -> dict:
    assert server.proc is not None
    try:
        async with server.client() as c:
            health = (await c.get("/api/health")).json()
    except httpx.TransportError:
        health = {}
    assert server.proc.poll() is None, f"runwatch exited with {server.proc.wait(5)}"
    assert health["status"] == "ok"
    return health


async def _no_offline_streams(server: Server) -> bool:
    return (await _assert_alive(server))["offline_streams"] == 0


@pytest.fixture
def srv(make_server) -> Server:
    return make_server()


async def test_cancelling_a_run_at_full_speed_leaves_the_server_running(srv):
    # The run's own model stream (the offline model, over HTTP) is cut while it is being written.
    run = await srv.start_run({"tokens": 3_000_000, "rate": 0})
    async with srv.client() as c:

        async def streaming() -> bool:
            page = (await c.get(f"/api/runs/{run}/events", params={"limit": 5})).json()
            return any(e["type"] == "token" for e in page["events"])

        await eventually(streaming, timeout=10)
        assert (await c.post(f"/api/runs/{run}/cancel")).status_code == 202
    await eventually(lambda: _no_offline_streams(srv), timeout=20)


async def test_a_streaming_chat_completion_client_that_leaves_mid_read_leaves_the_server_running(srv):
    content = json.dumps({"tokens": 1_000_000, "rate": 0})
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": content}], "stream": True})
    for _ in range(ROUNDS):
        await _read_then_walk_out(srv, _request("POST", "/v1/chat/completions", body.encode(), token=srv.token))
        await eventually(lambda: _no_offline_streams(srv), timeout=10)


async def test_a_paced_chat_completion_client_that_leaves_mid_read_leaves_the_server_running(srv):
    # Paced streams are written by the offline model's pacer, straight to the socket.
    content = json.dumps({"tokens": 1_000_000, "rate": 2000, "token_chars": 64})
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": content}], "stream": True})
    for _ in range(ROUNDS):
        await _read_then_walk_out(srv, _request("POST", "/v1/chat/completions", body.encode(), token=srv.token))
        await eventually(lambda: _no_offline_streams(srv), timeout=10)


async def _finished_big_run(srv) -> str:
    """A finished run of 20,000 tokens of 200 characters (4 MB): more than one read of its replay."""
    run = await srv.start_run({"tokens": 20_000, "token_chars": 200, "rate": 0})
    watcher = await srv.watcher()
    await watcher.subscribe(run)
    await watcher.until_finished(run, timeout=30)
    await watcher.close()
    return run


async def test_an_sse_client_that_leaves_mid_stream_leaves_the_server_running(srv):
    run = await _finished_big_run(srv)
    for _ in range(ROUNDS):
        await _read_then_walk_out(srv, _request("GET", f"/api/runs/{run}/stream", token=srv.token), nbytes=64 * 1024)
        await _assert_alive(srv)


async def test_a_replay_client_that_leaves_mid_response_leaves_the_server_running(srv):
    run = await _finished_big_run(srv)
    for _ in range(ROUNDS):
        await _read_then_walk_out(
            srv, _request("GET", f"/api/runs/{run}/events?limit=5000", token=srv.token), nbytes=64 * 1024
        )
        await _assert_alive(srv)
