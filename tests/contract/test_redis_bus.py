"""The Redis bus between instances: several ``RedisBus`` instances (a hub and a ``RedisBroker``
each), each with its own PostgreSQL store on one database, sharing the machine's Redis under a
key prefix of the test's own."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio

from runwatch.agents.bus import LIFECYCLE, Node
from runwatch.agents.bus.redis import RedisBroker, RedisBus
from runwatch.agents.events import RunFinished, RunQueued, RunStarted, Token
from runwatch.agents.store import PostgresStore
from tests.harness.services import REDIS, drop_prefix, new_prefix, postgres_database, wait_until
from tests.harness.waiting import eventually


class Wakes:
    def __init__(self) -> None:
        self.heads: list[int] = []

    def notify(self, stream: str, head: int) -> None:
        self.heads.append(head)


@pytest.fixture
async def instances():
    """``new_instance(**kwargs)`` → a started ``RedisBus`` with a store of its own; all closed after."""
    made: list[tuple[Node[RedisBroker], PostgresStore]] = []
    prefix = new_prefix()
    async with postgres_database() as url:

        async def new_instance(**kwargs) -> Node[RedisBroker]:
            store = PostgresStore(url)
            await store.open()
            bus = RedisBus(REDIS, journal=store, prefix=prefix, **kwargs)
            await bus.start()
            made.append((bus, store))
            return bus

        new_instance.prefix = prefix
        new_instance.store = lambda bus: next(s for b, s in made if b is bus)  # for the tests' own reads
        yield new_instance
        for bus, store in made:
            await bus.close()
            await store.close()
    drop_prefix(REDIS, prefix)


async def _settle(bus: Node[RedisBroker]) -> None:
    await bus.broker.sent()


async def test_a_watcher_on_another_instance_gets_every_event_in_order_with_the_same_bytes(instances):
    a, b = await instances(), await instances()
    wakes = Wakes()
    b.watch("r", wakes)
    await a.publish(RunQueued(run_id="r", agent="demo", input="hi", model="m"))
    sent = [await a.publish(Token(run_id="r", text=str(i))) for i in range(50)]
    await wait_until(lambda: b.head("r") == 51, 5, "the follower to reach seq 51")
    got = await b.read("r", 0, 100)
    assert [p.seq for p in got] == list(range(1, 52))
    assert [p.data for p in got[1:]] == [p.data for p in sent]
    assert wakes.heads == sorted(wakes.heads) and wakes.heads[-1] == 51


async def test_joining_a_live_run_merges_history_and_live_without_gap_or_duplicate(instances):
    a, b = await instances(), await instances()
    await a.publish(RunQueued(run_id="r", agent="demo", input="hi", model="m"))
    for i in range(30):
        await a.publish(Token(run_id="r", text=str(i)))
    await _settle(a)
    b.watch("r", Wakes())
    await wait_until(lambda: b.head("r") == 31, 5, "the follower to learn the head")
    for i in range(30):
        await a.publish(Token(run_id="r", text=str(30 + i)))
    await wait_until(lambda: b.head("r") == 61, 5, "the live events")
    cursor, seen = 0, []
    while batch := await b.read("r", cursor, 7):  # history from the Stream, then memory
        seen += [p.seq for p in batch]
        cursor = batch[-1].seq
    assert seen == list(range(1, 62))


async def test_a_message_lost_by_pub_sub_is_repaired_from_the_stream_never_passed_on(instances):
    a, b = await instances(), await instances()
    b.watch("r", Wakes())
    await a.publish(RunQueued(run_id="r", agent="demo", input="hi", model="m"))
    await wait_until(lambda: b.head("r") == 1, 5, "the follower")
    channel = instances.prefix + "ch:r"
    redis = a.broker.redis

    async def subscribers() -> int:
        return dict(await redis.pubsub_numsub(channel)).get(channel.encode(), 0)

    following = await subscribers()
    await b.broker._link.pubsub.unsubscribe(channel)  # the follower misses what comes next, as PUB/SUB may
    for i in range(5):
        await a.publish(Token(run_id="r", text=str(i)))
    await _settle(a)
    await b.broker._link.pubsub.subscribe(channel)

    async def subscribed_again() -> bool:
        return await subscribers() == following

    await eventually(subscribed_again, 5, "the follower to subscribe again")
    await a.publish(Token(run_id="r", text="after the gap"))
    await wait_until(lambda: b.head("r") == 7, 5, "the gap to be repaired")
    assert [p.seq for p in b.recent("r", 0, 100)] == list(range(1, 8))


async def test_the_runs_feed_is_one_sequence_on_every_instance(instances):
    a, b = await instances(), await instances()
    await a.publish(RunQueued(run_id="r1", agent="demo", input="hi", model="m"))
    await _settle(a)
    await b.publish(RunQueued(run_id="r2", agent="demo", input="hi", model="m"))
    await _settle(b)
    await a.publish(RunStarted(run_id="r1", agent="demo"))
    await a.publish(Token(run_id="r1", text="not a lifecycle event"))
    for bus in (a, b):
        await wait_until(lambda bus=bus: bus.head(LIFECYCLE) == 3, 5, "the feed")
    seen = [[(p.seq, p.run_id, p.type, p.data) for p in bus.recent(LIFECYCLE, 0, 10)] for bus in (a, b)]
    assert seen[0] == seen[1] and [s[:3] for s in seen[0]][:2] == [(1, "r1", "run.queued"), (2, "r2", "run.queued")]
    assert a.feed_epoch == b.feed_epoch
    late = await instances()  # an instance started later reads the feed from Redis
    assert [p.seq for p in await late.read(LIFECYCLE, 0, 10)] == [1, 2, 3]


async def test_a_run_handed_to_another_instance_continues_at_the_next_position(instances):
    a, b = await instances(), await instances()
    wakes = Wakes()
    a.watch("r", wakes)
    await a.publish(RunQueued(run_id="r", agent="demo", input="hi", model="m"))
    await a.broker.release("r")  # queued: the instance that takes it from the queue publishes next
    started = await b.publish(RunStarted(run_id="r", agent="demo"))
    await b.publish(Token(run_id="r", text="x"))
    assert started.seq == 2
    await wait_until(lambda: a.head("r") == 3, 5, "the first instance to follow the new owner")
    assert [p.type for p in a.recent("r", 0, 10)] == ["run.queued", "run.started", "token"]


async def test_when_redis_loses_a_run_readers_get_it_from_the_store(instances):
    a, b = await instances(), await instances()
    await a.publish(RunQueued(run_id="r", agent="demo", input="hi", model="m"))
    for i in range(10):
        await a.publish(Token(run_id="r", text=str(i)))
    await _settle(a)
    drop_prefix(REDIS, instances.prefix)  # what a Redis restarted without persistence holds: nothing
    assert [p.seq for p in await b.read("r", 0, 100)] == list(range(1, 12))
    assert await b.position("r") == 11


async def test_a_read_goes_on_from_the_store_where_the_run_s_stream_lacks_its_tail(instances):
    a, b = await instances(), await instances()
    await a.publish(RunQueued(run_id="r", agent="demo", input="hi", model="m"))
    for i in range(10):
        await a.publish(Token(run_id="r", text=str(i)))
    await _settle(a)
    # What an owner that died between its commit and its send leaves: the Stream lacks the last three.
    client = redis.asyncio.Redis.from_url(REDIS)
    await client.xdel(instances.prefix + "log:r", "9-0", "10-0", "11-0")
    await client.aclose()
    assert [p.seq for p in await b.read("r", 0, 100)] == list(range(1, 12))
    assert [p.seq for p in await b.read("r", 4, 5)] == list(range(5, 10))


async def test_finished_runs_leave_redis_after_the_retention_and_live_ones_are_bounded(instances):
    a = await instances(retain_seconds=30, live_seconds=600)
    for i in range(20):
        await a.publish(RunQueued(run_id=f"r{i}", agent="demo", input="hi", model="m"))
        await a.publish(Token(run_id=f"r{i}", text="x"))
        if i % 2 == 0:
            await a.publish(RunFinished(run_id=f"r{i}", status="succeeded"))
    await _settle(a)
    client = redis.asyncio.Redis.from_url(REDIS)
    ttls = {i: await client.ttl(instances.prefix + f"log:r{i}") for i in range(20)}
    await client.aclose()
    assert all(0 < ttls[i] <= 30 for i in range(0, 20, 2)), ttls
    assert all(30 < ttls[i] <= 600 for i in range(1, 20, 2)), ttls


async def test_a_watcher_arriving_while_the_owner_opens_the_run_never_makes_it_reuse_a_position(instances):
    a, b = await instances(), await instances()
    await b.publish(RunQueued(run_id="r", agent="demo", input="hi", model="m"))
    await b.broker.release("r")  # queued by b; a takes it and publishes next
    opening = asyncio.create_task(a.publish(RunStarted(run_id="r", agent="demo")))
    await asyncio.sleep(0)  # a is reading the run's head from the store
    a.watch("r", Wakes())
    started = await opening
    token = await a.publish(Token(run_id="r", text="x"))
    assert (started.seq, token.seq) == (2, 3)
    await _settle(a)
    assert [p.type for p in await instances.store(a).events("r", 0, 10)] == ["run.queued", "run.started", "token"]


async def test_a_fenced_instance_cannot_publish_to_the_run(instances):
    from runwatch.agents.bus import Fenced

    a = await instances()
    await a.publish(RunQueued(run_id="r", agent="demo", input="hi", model="m"))
    a.broker.fence("r")
    with pytest.raises(Fenced):
        await a.publish(Token(run_id="r", text="x"))
    a.broker.unfence("r")  # taken again, legitimately
    assert (await a.publish(Token(run_id="r", text="y"))).seq == 2


async def test_a_redis_prefix_serves_one_database_only(instances):
    from runwatch.agents.bus.redis import StoreMismatch

    await instances()  # the prefix now belongs to the fixture's database
    async with postgres_database() as other_url:
        other = PostgresStore(other_url)
        await other.open()
        stray = RedisBus(REDIS, journal=other, prefix=instances.prefix)
        with pytest.raises(StoreMismatch, match="RUNWATCH_DATABASE_URL"):
            await stray.start()
        await stray.close()
        await other.close()
