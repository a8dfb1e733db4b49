"""The front door: request heads are bounded, slow requests time out, connections are bounded, odd
paths are 404s and a client's bad frame is one warning, never an error of ours with a traceback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import websockets

from runwatch.agents.errors import HTTP_STATUS, CloseCode, ErrorCode
from runwatch.api.settings.config import ConfigError, load_settings
from tests.conftest import Server

#: The test server's request timeout: short, so that a test waits for it.
TIMEOUT = 1.0
#: How long past the timeout a slow connection may take to be closed (a busy machine's scheduling).
GRACE = 4.0
MAX_HEADER_BYTES = 32 * 1024  # the default
MIB = 1024 * 1024


#: Seconds a test server may take to start: a busy machine imports slowly.
START = 60.0


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("door"), {"RUNWATCH_REQUEST_TIMEOUT": str(TIMEOUT)}).start(START)
    yield srv
    srv.stop()


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Callable[[int], Server]]:
    """``limited(n)``: a server of its own that holds at most ``n`` connections."""
    started: list[Server] = []

    def start(n: int) -> Server:
        started.append(Server(tmp_path / f"data{len(started)}", {"RUNWATCH_MAX_CONNECTIONS": str(n)}).start(START))
        return started[-1]

    yield start
    for srv in started:
        srv.stop()


class LogMark:
    """The server's log lines written after this point."""

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.offset = len(srv.logs())

    def text(self) -> str:
        return self.srv.logs()[self.offset :]

    def lines(self) -> list[dict]:
        out = []
        for line in self.text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def assert_no_error(self) -> None:
        errors = [line for line in self.lines() if line.get("level") in ("error", "critical")]
        assert not errors, errors
        assert "Traceback" not in self.text()


def peak_reset(pid: int) -> int:
    """Reset the process's peak RSS to its RSS now (Linux); returns it in KiB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak_kib(pid)


def peak_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def body_of(answer: bytes) -> dict:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


async def exchange(srv: Server, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a new connection, then read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def get(path: str = "/api/health", headers: list[bytes] = ()) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n" % (path.encode(), b"".join(headers))


async def test_a_16_mib_header_is_answered_431_and_the_server_stays_small(door):
    assert door.proc is not None
    before = peak_reset(door.proc.pid)
    answer = await exchange(door, get(headers=[b"X-Big: " + b"a" * (16 * MIB) + b"\r\n"]))
    assert status_of(answer) == 431, answer[:200]
    body = body_of(answer)
    assert body["code"] == ErrorCode.HEADERS_TOO_LARGE and "RUNWATCH_MAX_HEADER_BYTES" in body["detail"]
    assert peak_kib(door.proc.pid) - before < 8 * 1024  # it read about 32 KiB of the 16 MiB


async def test_a_never_ending_header_is_cut_at_the_limit(door):
    assert door.proc is not None
    before = peak_reset(door.proc.pid)
    reader, writer = await asyncio.open_connection("127.0.0.1", door.port)
    answer = asyncio.create_task(reader.read())
    writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
    sent, chunk = 0, b"a" * 65536
    try:
        while not answer.done() and sent < 64 * MIB:
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
            await asyncio.sleep(0)  # a yield to the reader, not a wait
    except ConnectionError:
        pass
    data = await asyncio.wait_for(answer, 10)
    writer.close()
    assert status_of(data) == 431, data[:200]
    assert sent < 16 * MIB  # cut long before the end (what the sockets' buffers hold is counted here too)
    assert peak_kib(door.proc.pid) - before < 8 * 1024


async def test_too_many_headers_are_answered_431_and_one_fewer_is_served(door):
    def headers(n: int) -> list[bytes]:  # Host and Connection are two of them
        return [b"X-H%d: 1\r\n" % i for i in range(n - 2)]

    assert status_of(await exchange(door, get(headers=headers(100)))) == 200
    answer = await exchange(door, get(headers=headers(101)))
    assert status_of(answer) == 431 and body_of(answer)["code"] == ErrorCode.HEADERS_TOO_LARGE


async def test_headers_under_the_byte_limit_are_served_and_over_it_answered_431(door):
    cookie = b"Cookie: s=" + b"c" * (MAX_HEADER_BYTES - 1024) + b"\r\n"
    assert status_of(await exchange(door, get(headers=[cookie]))) == 200
    cookie = b"Cookie: s=" + b"c" * (MAX_HEADER_BYTES + 1024) + b"\r\n"
    assert status_of(await exchange(door, get(headers=[cookie]))) == 431


async def test_a_connection_that_sends_nothing_is_closed_within_the_request_timeout(door):
    assert await exchange(door, b"", timeout=TIMEOUT + GRACE) == b""


async def test_a_partial_head_is_answered_408_within_the_request_timeout(door):
    answer = await exchange(door, b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1", timeout=TIMEOUT + GRACE)
    assert status_of(answer) == HTTP_STATUS[ErrorCode.REQUEST_TIMEOUT]
    body = body_of(answer)
    assert body["code"] == ErrorCode.REQUEST_TIMEOUT and "RUNWATCH_REQUEST_TIMEOUT" in body["detail"]


async def test_a_partial_body_is_answered_408_within_the_request_timeout_and_logs_no_error(door):
    mark = LogMark(door)
    head = b"POST /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n" % door.token.encode()
    head += b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    answer = await exchange(door, head + b'{"agent": "demo"', timeout=TIMEOUT + GRACE)
    assert status_of(answer) == 408 and body_of(answer)["code"] == ErrorCode.REQUEST_TIMEOUT
    async with door.client() as c:  # a later request: the app has logged the cut-off one by then
        assert (await c.get("/api/health")).status_code == 200
    mark.assert_no_error()


async def test_health_answers_while_slow_connections_wait_and_every_one_is_closed_within_the_timeout(door):
    partial_body = b"POST /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n" % door.token.encode()
    partial_body += b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    slow = {
        b"": b"",  # silence after connect: closed without a word
        b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1": b"HTTP/1.1 408 ",
        partial_body: b"HTTP/1.1 408 ",
    }
    opened = []
    for data in slow:
        for _ in range(100):
            reader, writer = await asyncio.open_connection("127.0.0.1", door.port)
            writer.write(data)
            opened.append((data, reader, writer))
    async with door.client() as c:
        for _ in range(20):
            assert (await c.get("/api/health")).status_code == 200
    answers = await asyncio.wait_for(asyncio.gather(*(r.read() for _, r, _ in opened)), TIMEOUT + GRACE)
    for (data, _, writer), answer in zip(opened, answers, strict=True):
        writer.close()
        assert answer.startswith(slow[data]) and (answer or data == b""), answer[:100]


async def test_at_the_connection_limit_a_new_connection_takes_the_place_of_the_oldest_waiting_one(limited):
    srv = limited(10)
    waiting = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(10)]
    async with srv.client() as c:
        assert (await c.get("/api/health")).status_code == 200
    oldest_reader, _ = waiting[0]
    assert await asyncio.wait_for(oldest_reader.read(), 5) == b""  # long before the 15 s request timeout
    for _, writer in waiting:
        writer.close()


async def test_at_the_connection_limit_with_none_waiting_a_new_connection_is_answered_503(limited):
    srv = limited(3)
    watchers = [await srv.watcher() for _ in range(3)]
    answer = await exchange(srv, get())
    assert status_of(answer) == 503 and b"retry-after: 1\r\n" in answer
    body = body_of(answer)
    assert body["code"] == ErrorCode.SERVER_BUSY and "RUNWATCH_MAX_CONNECTIONS" in body["detail"]
    await watchers.pop().close()
    assert status_of(await exchange(srv, get())) == 200
    for w in watchers:
        await w.close()


@pytest.mark.parametrize(
    "path",
    ["/index.html%00.js", "/%00", "/app.js%00", "/%ff", "/..%2f..%2fetc%2fpasswd", "/index.html/x", "/" + "a" * 300],
)
async def test_odd_static_paths_are_404_with_no_error_line(door, path):
    mark = LogMark(door)
    answer = await exchange(door, get(path))
    assert status_of(answer) == 404, answer[:200]
    mark.assert_no_error()


async def test_an_invalid_utf8_text_frame_closes_1007_with_one_warning_and_no_traceback(door):
    mark = LogMark(door)
    w = await door.watcher(read=False)
    await w.ws.recv()  # hello
    await w.ws.send(b"\xff\xfe", text=True)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(w.ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == CloseCode.INVALID_DATA
    async with door.client() as c:  # a later request: the app has logged the closed socket by then
        assert (await c.get("/api/health")).status_code == 200
    assert [line["level"] for line in mark.lines() if line["event"] == "ws.invalid_utf8"] == ["warning"]
    mark.assert_no_error()


async def test_an_unauthenticated_socket_sending_invalid_utf8_is_never_an_error_line(door):
    """Refused sockets are closed (4401) right after the upgrade; a frame that comes first closes it
    with 1007. Which comes first is a race (on an idle machine the 4401 nearly always wins), so 50
    sockets try, and whichever way each ends, no line is an error and each 1007 is one warning."""
    mark = LogMark(door)
    codes = []
    while len(codes) < 50:
        async with websockets.connect(door.ws_url) as ws:
            try:
                await ws.send(b"\xff\xfe", text=True)
                await asyncio.wait_for(ws.recv(), 10)
            except websockets.ConnectionClosed as exc:
                codes.append(exc.rcvd.code if exc.rcvd else None)
    assert set(codes) <= {CloseCode.INVALID_DATA, CloseCode.UNAUTHENTICATED}
    async with door.client() as c:
        assert (await c.get("/api/health")).status_code == 200
    warnings = [line for line in mark.lines() if line["event"] == "ws.invalid_utf8"]
    assert len(warnings) == codes.count(CloseCode.INVALID_DATA)
    mark.assert_no_error()


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("RUNWATCH_REQUEST_TIMEOUT", "0", "RUNWATCH_REQUEST_TIMEOUT"),
        ("RUNWATCH_MAX_HEADER_BYTES", "100", "RUNWATCH_MAX_HEADER_BYTES"),
        ("RUNWATCH_MAX_HEADERS", "0", "max_headers must be 1 or more, got 0; set RUNWATCH_MAX_HEADERS"),
        ("RUNWATCH_MAX_CONNECTIONS", "0", "max_connections must be 1 or more, got 0; set RUNWATCH_MAX_CONNECTIONS"),
    ],
)
def test_front_door_settings_out_of_range_are_refused_at_start_saying_which(name, value, words):
    with pytest.raises(ConfigError, match=words):
        load_settings(environ={name: value})
