"""The bus contract. Without a journal: the memory bus. With one (the durability guarantees): the
memory bus on SQLite and the Redis bus on PostgreSQL, each test on a database and key prefix of its own."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from runwatch.agents.bus import LIFECYCLE, MemoryBus, RecentLog
from runwatch.agents.bus.redis import RedisBus
from runwatch.agents.events import Published, RunFinished, RunQueued, Token, decode
from runwatch.agents.store import PostgresStore, SQLiteStore
from tests.harness.services import REDIS, drop_prefix, new_prefix, postgres_database


@pytest.fixture(params=["memory"])
async def bus(request):
    b = MemoryBus(log_capacity=16, feed_capacity=8, retain_seconds=60)
    await b.start()
    yield b
    await b.close()


@pytest.fixture(params=["memory+sqlite", "redis+postgres"])
async def backend(request, tmp_path):
    """``(store, new_bus)``: a store, and a factory of started buses that journal to it (one per
    instance); everything is closed and removed afterwards."""
    buses = []
    prefix = new_prefix()
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "memory+sqlite":
            store = SQLiteStore(tmp_path / "j.sqlite3")
        else:
            store = PostgresStore(await stack.enter_async_context(postgres_database()))
        await store.open()

        async def new_bus():
            bus = (
                MemoryBus(journal=store)
                if request.param == "memory+sqlite"
                else RedisBus(REDIS, journal=store, prefix=prefix)
            )
            await bus.start()
            buses.append(bus)
            return bus

        yield store, new_bus
        for bus in buses:
            await bus.close()
        await store.close()
    drop_prefix(REDIS, prefix)


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


class Broken(Recorder):
    def accept(self, published: Published) -> None:
        raise RuntimeError("sink bug")

    def notify(self, stream: str, head: int) -> None:
        raise RuntimeError("watcher bug")


async def test_publish_numbers_each_run_from_one_without_gaps_and_returns_the_position(bus):
    for i in range(5):
        a = await bus.publish(Token(run_id="a", text=str(i)))
        await bus.publish(Token(run_id="b", text=str(i)))
        assert a.seq == i + 1
    assert [p.seq for p in await bus.read("a", 0, 100)] == [1, 2, 3, 4, 5]
    assert [p.seq for p in bus.recent("b", 2, 100)] == [3, 4, 5]
    assert await bus.position("a") == 5 and bus.epoch


async def test_an_event_is_encoded_once_and_the_same_bytes_go_to_everyone(bus):
    sink = Recorder()
    bus.add_sink(sink)
    published = await bus.publish(Token(run_id="a", text="hi"))
    assert sink.seen[0] is published
    assert bus.recent("a", 0, 1)[0].data is published.data
    assert decode(published.data) == Token(run_id="a", text="hi", seq=1, ts=published.event.ts)


async def test_watchers_are_woken_with_the_new_head(bus):
    watcher = Recorder()
    bus.watch("a", watcher)
    await bus.publish(Token(run_id="a", text="x"))
    await bus.publish(Token(run_id="b", text="x"))
    bus.unwatch("a", watcher)
    await bus.publish(Token(run_id="a", text="y"))
    assert watcher.wakes == [("a", 1)]


async def test_a_failing_watcher_or_sink_breaks_no_publish_and_no_other_watcher(bus):
    good, bad = Recorder(), Broken()
    bus.add_sink(bad)
    bus.add_sink(good)
    bus.watch("a", bad)
    bus.watch("a", good)
    for i in range(3):
        assert (await bus.publish(Token(run_id="a", text=str(i)))).seq == i + 1
    assert [p.seq for p in good.seen] == [1, 2, 3]
    assert good.wakes == [("a", 1), ("a", 2), ("a", 3)]


async def test_reading_past_the_retained_window_says_go_to_the_store(bus):
    for i in range(40):
        await bus.publish(Token(run_id="a", text=str(i)))
    assert bus.recent("a", 0, 10) is None
    assert [p.seq for p in bus.recent("a", 38, 100)] == [39, 40]
    assert bus.recent("unknown", 0, 10) is None


async def test_the_runs_feed_has_only_run_events_with_their_feed_position(bus):
    await bus.publish(RunQueued(run_id="a", agent="demo", input="", model="m"))
    await bus.publish(Token(run_id="a", text="x"))
    await bus.publish(RunFinished(run_id="a", status="succeeded"))
    feed = bus.recent(LIFECYCLE, 0, 10)
    assert [(p.type, p.seq) for p in feed] == [("run.queued", 1), ("run.finished", 2)]
    assert decode(feed[1].data).seq == 3 and b'"feed":2' in feed[1].data
    assert bus.head(LIFECYCLE) == 2 and bus.epoch_of(LIFECYCLE) == bus.feed_epoch
    assert [p.seq for p in bus.recent(LIFECYCLE, 1, 10)] == [2]


async def test_finished_runs_leave_memory_beyond_the_retained_count():
    bus = MemoryBus(max_retained=2)
    for run in ("a", "b", "c"):
        await bus.publish(RunFinished(run_id=run, status="succeeded"))
    assert bus.recent("a", 0, 10) is None
    assert [p.seq for p in bus.recent("c", 0, 10)] == [1]


async def test_memory_is_bounded_in_bytes_finished_runs_first():
    bus = MemoryBus(memory_bytes=64 * 1024, log_capacity=100_000)
    big = "x" * 1000
    for _ in range(20):
        await bus.publish(Token(run_id="done", text=big))
    await bus.publish(RunFinished(run_id="done", status="succeeded"))
    for _ in range(10):  # each costs ~2.3 KB: this crosses the budget
        await bus.publish(Token(run_id="live", text=big))
    assert bus.recent("done", 0, 10) is None  # the finished run left first
    assert bus.recent("live", 0, 100) is not None
    for _ in range(200):
        await bus.publish(Token(run_id="live", text=big))
        assert bus.memory_used <= 64 * 1024
    assert bus.recent("live", 0, 10) is None  # its oldest events left memory
    assert [p.seq for p in bus.recent("live", 209, 10)] == [210]
    assert bus.freed > 0


def test_recent_log_reads_slices_and_trims_the_oldest_first():
    ring = RecentLog(4)
    for i in range(1, 11):
        ring.append(Published("r", i, "token", b"%d" % i))
        ring.visible = ring.head
    assert ring.head == 10 and ring.first >= 6
    assert [p.seq for p in ring.read(6, 10)] == [7, 8, 9, 10]
    assert [p.seq for p in ring.read(8, 1)] == [9]
    assert ring.read(2, 10) is None
    assert ring.read(10, 10) == []


async def test_with_a_journal_nothing_is_visible_before_it_is_durable(backend):
    store, new_bus = backend
    bus = await new_bus()
    watcher = Recorder()
    bus.watch("a", watcher)
    published = await bus.publish(RunQueued(run_id="a", agent="demo", input="hi", model="m"))
    assert published.seq == 1 and bus.head("a") == 0 and bus.recent("a", 0, 10) == []
    assert watcher.wakes == []
    await store.flush()
    assert bus.head("a") == 1 and watcher.wakes == [("a", 1)]
    assert [p.seq for p in await store.events("a", 0, 10)] == [1]


async def test_settled_returns_once_what_a_run_published_is_visible_and_its_watchers_woken(backend):
    _, new_bus = backend
    bus = await new_bus()
    watcher = Recorder()
    bus.watch("a", watcher)
    await bus.publish(RunQueued(run_id="a", agent="demo", input="hi", model="m"))
    for i in range(3):
        await bus.publish(Token(run_id="a", text=str(i)))
    assert bus.head("a") < 4
    await asyncio.wait_for(bus.settled("a"), 5)
    assert bus.head("a") == 4 and watcher.wakes[-1] == ("a", 4)
    await asyncio.wait_for(bus.settled("a"), 5)  # nothing in flight: one turn of the loop
    await asyncio.wait_for(bus.settled("unknown"), 5)


async def test_a_run_the_bus_does_not_hold_continues_from_the_journal(backend):
    store, new_bus = backend
    first = await new_bus()
    for i in range(3):
        await first.publish(Token(run_id="a", text=str(i)))
    await store.flush()
    second = await new_bus()  # another process: the run's log is not in its memory
    marker = await second.publish(RunFinished(run_id="a", status="failed", error="interrupted"))
    assert marker.seq == 4 and second.epoch == first.epoch == store.epoch
