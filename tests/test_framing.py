"""Frames made once and written straight to uvicorn's transports: their bytes, sharing, and use."""

from __future__ import annotations

import json

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from runwatch.agents.bus import MemoryBus
from runwatch.agents.events import Token
from runwatch.api.framing import text_frame
from runwatch.api.lane import FastLane
from tests.watcher import eventually


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
    server = make_server()
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
