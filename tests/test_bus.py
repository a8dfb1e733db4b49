"""The bus contract, run over every backend (memory today; Redis joins the parameter list)."""

from __future__ import annotations

import pytest

from runwatch.agents.bus import LIFECYCLE, MemoryBus, RingLog
from runwatch.agents.events import Published, RunFinished, RunQueued, Token, decode


@pytest.fixture(params=["memory"])
def bus(request):
    return MemoryBus(log_capacity=16, feed_capacity=8, retain_seconds=60)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Published] = []
        self.wakes: list[tuple[str, int]] = []

    def accept(self, published: Published) -> None:
        self.seen.append(published)

    async def ready(self) -> None:
        return None

    def notify(self, stream: str, head: int) -> None:
        self.wakes.append((stream, head))


async def test_publish_numbers_each_run_from_one_without_gaps(bus):
    for i in range(5):
        await bus.publish(Token(run_id="a", text=str(i)))
        await bus.publish(Token(run_id="b", text=str(i)))
    assert [p.seq for p in bus.read("a", 0, 100)] == [1, 2, 3, 4, 5]
    assert [p.seq for p in bus.read("b", 2, 100)] == [3, 4, 5]


async def test_an_event_is_encoded_once_and_the_same_bytes_go_to_everyone(bus):
    sink = Recorder()
    bus.add_sink(sink)
    published = await bus.publish(Token(run_id="a", text="hi"))
    assert sink.seen[0] is published
    assert bus.read("a", 0, 1)[0].data is published.data
    assert decode(published.data) == Token(run_id="a", text="hi", seq=1, ts=published.event.ts)


async def test_watchers_are_woken_with_the_new_head(bus):
    watcher = Recorder()
    bus.watch("a", watcher)
    await bus.publish(Token(run_id="a", text="x"))
    await bus.publish(Token(run_id="b", text="x"))
    bus.unwatch("a", watcher)
    await bus.publish(Token(run_id="a", text="y"))
    assert watcher.wakes == [("a", 1)]


async def test_reading_past_the_retained_window_says_go_to_the_store(bus):
    for i in range(40):
        await bus.publish(Token(run_id="a", text=str(i)))
    assert bus.read("a", 0, 10) is None
    assert [p.seq for p in bus.read("a", 24, 100)] == list(range(25, 41))
    assert bus.read("unknown", 0, 10) is None


async def test_the_lifecycle_feed_has_only_run_events(bus):
    await bus.publish(RunQueued(run_id="a", agent="demo", input="", model="m"))
    await bus.publish(Token(run_id="a", text="x"))
    await bus.publish(RunFinished(run_id="a", status="succeeded"))
    assert [p.type for p in bus.read(LIFECYCLE, 0, 10)] == ["run.queued", "run.finished"]
    assert bus.head(LIFECYCLE) == 2


async def test_finished_runs_leave_memory_beyond_the_retained_count():
    bus = MemoryBus(max_retained=2)
    for run in ("a", "b", "c"):
        await bus.publish(RunFinished(run_id=run, status="succeeded"))
    assert bus.read("a", 0, 10) is None
    assert [p.seq for p in bus.read("c", 0, 10)] == [1]


def test_ring_log_reads_across_the_wrap():
    ring = RingLog(4)
    for i in range(1, 11):
        ring.append(Published("r", i, "token", b"%d" % i))
    assert ring.first == 7 and ring.head == 10
    assert [p.seq for p in ring.read(6, 10)] == [7, 8, 9, 10]
    assert [p.seq for p in ring.read(8, 1)] == [9]
    assert ring.read(5, 10) is None
    assert ring.read(10, 10) == []
