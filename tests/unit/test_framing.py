"""Frames made once and written straight to uvicorn's transports: their bytes, sharing, and use."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from structlog.testing import capture_logs
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.streams import StreamReader

from runwatch.agents.bus import MemoryBus
from runwatch.agents.events import Token
from runwatch.api.ws.connection import Connection
from runwatch.api.ws.framing import DirectWriter, text_frame
from runwatch.api.ws.lane import FastLane
from tests.harness.waiting import eventually


def parse(data: bytes) -> Frame:
    """Read ``data`` with the websockets library's own client-side frame parser."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
    with pytest.raises(StopIteration) as done:
        next(parser)
    return done.value.value


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_text_frames_parse_as_one_whole_unmasked_frame_at_every_length(size):
    payload = ("é" * size).encode()[:size]
    frame = parse(text_frame(payload))
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, payload)


async def test_watchers_owed_the_same_events_get_the_same_bytes_object():
    bus = MemoryBus()
    for word in ("a", "b", "c"):
        await bus.publish(Token(run_id="r", text=word))
    lane = FastLane()
    first = lane.frame((("r", 0, 3),), bus)
    again = lane.frame((("r", 0, 3),), bus)
    other = lane.frame((("r", 1, 3),), bus)
    assert first is again and first.data is again.data
    assert [e["text"] for e in json.loads(parse(first.data).data)] == ["a", "b", "c"]
    assert [e["text"] for e in json.loads(parse(other.data).data)] == ["b", "c"]
    assert (first.events, other.events) == (3, 2)


async def test_a_single_event_frame_is_the_event_itself_not_an_array():
    bus = MemoryBus()
    await bus.publish(Token(run_id="r", text="hi"))
    frame = FastLane().frame((("r", 0, 1),), bus)
    assert json.loads(parse(frame.data).data)["text"] == "hi"


async def test_events_the_bus_no_longer_holds_make_no_frame():
    bus = MemoryBus(log_capacity=2)
    for word in ("a", "b", "c"):
        await bus.publish(Token(run_id="r", text=word))
    assert FastLane().frame((("r", 0, 3),), bus) is None


async def test_runwatch_serve_writes_live_frames_directly(make_server):
    server = make_server({"RUNWATCH_LOG_LEVEL": "debug"})  # (ws.connected and ws.disconnected are debug lines)
    run = await server.start_run({"tokens": 20, "rate": 200})
    watcher = await server.watcher()
    await watcher.subscribe(run)
    events = await watcher.until_finished(run)
    await watcher.close()
    assert sum(e.get("deltas", 0) for e in events if e["type"] == "token") == 20

    def direct_frames() -> list[int]:
        return [line["direct_frames"] for line in server.log_lines() if line.get("event") == "ws.disconnected"]

    async def logged() -> bool:
        return bool(direct_frames())

    await eventually(logged)
    assert direct_frames()[0] > 0
    connected = [line for line in server.log_lines() if line.get("event") == "ws.connected"]
    assert [line["direct_writes"] for line in connected] == [True]


class _RecordingTransport:
    """A transport that keeps what is written to it."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.written.append(data)


def _caught_up_connection(bus: MemoryBus, transport, frame_events: int, sent: list[str]) -> Connection:
    async def asgi_send(message: dict) -> None:
        sent.append(message["text"])

    return Connection(
        "c1",
        asgi_send,
        bus=bus,
        max_lag=100_000,
        send_timeout=10,
        frame_events=frame_events,
        frame_bytes=65536,
        heartbeat=60,
        lane=FastLane(),
        writer=DirectWriter(_uvicorn_like_protocol(transport), State.OPEN, conn="c1"),
    )


def _tokens(text: str | bytes) -> list[str]:
    """A frame's token texts (a frame of one event is the event, of more an array)."""
    body = json.loads(text)
    return [e["text"] for e in (body if isinstance(body, list) else [body])]


def _texts(frames: list[bytes]) -> list[list[str]]:
    return [_tokens(parse(data).data) for data in frames]


async def _burst_to_caught_up_watcher(words: list[str]) -> tuple[Connection, list[bytes], list[str]]:
    """A watcher with frames of 2 events, caught up by its sender task on one event ("first"), is
    sent ``words`` published within one event-loop iteration; returns it, what was written
    directly to its transport, and what went by the ASGI send."""
    bus = MemoryBus()
    transport = _RecordingTransport()
    sent: list[str] = []
    conn = _caught_up_connection(bus, transport, 2, sent)
    sender = conn.start()
    await bus.publish(Token(run_id="r", text="first"))
    conn.subscribe("r", 0)
    await until(lambda: len(sent) == 1)  # "first", by the sender task: caught up now
    for word in words:  # no other task runs between these publishes
        await bus.publish(Token(run_id="r", text=word))
    await until(lambda: conn.backlog() == 0)
    sender.cancel()
    return conn, transport.written, sent


async def test_a_burst_bigger_than_a_frame_is_written_directly_in_frames_of_frame_events():
    conn, written, sent = await _burst_to_caught_up_watcher(["a", "b", "c", "d", "e"])
    # "a" goes at once (the iteration's first event); the rest at the iteration's end, two a frame.
    assert _texts(written) == [["a"], ["b", "c"], ["d", "e"]]
    assert conn.direct_frames == 3 and len(sent) == 1


async def test_a_backlog_past_the_direct_limit_goes_by_the_sender_task(monkeypatch):
    monkeypatch.setattr("runwatch.api.ws.connection.MAX_DIRECT_EVENTS", 4)
    _, written, sent = await _burst_to_caught_up_watcher(["a", "b", "c", "d", "e", "f"])
    # "a" directly; the five after it are more than 4: the sender task sends them, two a frame.
    assert _texts(written) == [["a"]]
    assert [_tokens(text) for text in sent[1:]] == [["b", "c"], ["d", "e"], ["f"]]


async def until(check: Callable[[], bool]) -> None:
    async def checked() -> bool:
        return check()

    await eventually(checked, timeout=5)


class _BrokenTransport:
    """A transport whose ``write`` fails, as it might if uvicorn changed under us."""

    def __init__(self) -> None:
        self.writes = 0

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.writes += 1
        raise RuntimeError("this transport changed")


def _uvicorn_like_protocol(transport: _BrokenTransport) -> SimpleNamespace:
    writable = asyncio.Event()
    writable.set()
    return SimpleNamespace(
        conn=SimpleNamespace(state=State.OPEN),
        transport=transport,
        writable=writable,
        close_sent=False,
        disconnected=False,
    )


async def test_a_direct_write_that_raises_demotes_the_connection_and_the_frame_goes_by_asgi():
    bus = MemoryBus()
    transport = _BrokenTransport()
    writer = DirectWriter(_uvicorn_like_protocol(transport), State.OPEN, conn="c1")
    texts: list[str] = []
    arrived = asyncio.Condition()

    async def asgi_send(message: dict) -> None:
        async with arrived:
            texts.append(message["text"])
            arrived.notify_all()

    async def until_sent(count: int) -> None:
        async with arrived:
            await asyncio.wait_for(arrived.wait_for(lambda: len(texts) >= count), 5)

    conn = Connection(
        "c1",
        asgi_send,
        bus=bus,
        max_lag=100,
        send_timeout=10,
        frame_events=100,
        frame_bytes=65536,
        heartbeat=60,
        lane=FastLane(),
        writer=writer,
    )
    sender = conn.start()
    await bus.publish(Token(run_id="r", text="first"))
    conn.subscribe("r", 0)
    await until_sent(1)  # by the sender task: the subscription is caught up (live) now
    with capture_logs() as logs:
        await bus.publish(Token(run_id="r", text="second"))  # the fast lane tries the direct writer
        await until_sent(2)
    sender.cancel()
    assert transport.writes == 1 and writer.demoted
    assert json.loads(texts[1])["text"] == "second"  # not lost: the ASGI send carried it
    assert writer.write(b"frame") is False and transport.writes == 1
    assert [(line["event"], line["conn"]) for line in logs] == [("ws.direct_writes_demoted", "c1")]
    assert conn.direct_frames == 0 and conn.frames_sent == 2


async def test_runwatch_serve_with_direct_writes_off_sends_every_frame_through_asgi(make_server):
    server = make_server({"RUNWATCH_WS_DIRECT_WRITES": "off", "RUNWATCH_LOG_LEVEL": "debug"})
    run = await server.start_run({"tokens": 20, "rate": 200})
    watcher = await server.watcher()
    await watcher.subscribe(run)
    events = await watcher.until_finished(run)
    await watcher.close()
    assert sum(e.get("deltas", 0) for e in events if e["type"] == "token") == 20

    async def disconnected() -> list[dict]:
        return [line for line in server.log_lines() if line.get("event") == "ws.disconnected"]

    await eventually(disconnected)
    assert [line["direct_frames"] for line in await disconnected()] == [0]
    connected = [line for line in server.log_lines() if line.get("event") == "ws.connected"]
    assert [line["direct_writes"] for line in connected] == [False]
