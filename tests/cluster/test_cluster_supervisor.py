"""The cluster supervisor in-process, on the machine's Redis (a prefix of the test's own) and
PostgreSQL (a database of its own): what happens to a run at the edges of its ownership."""

from __future__ import annotations

import asyncio
import time

import pytest
from openai import AsyncOpenAI

from runwatch.agents import Agent
from runwatch.agents.bus import Fenced, Node
from runwatch.agents.bus.redis import RedisBroker, RedisBus
from runwatch.agents.cluster.leases import HOLD_AFTER
from runwatch.agents.cluster.queue import Job, RunQueue
from runwatch.agents.cluster.supervisor import ClusterSupervisor
from runwatch.agents.errors import Unavailable
from runwatch.agents.events import Token
from runwatch.agents.loop.agent import AgentRegistry
from runwatch.agents.loop.runner import Runner
from runwatch.agents.store import PostgresStore
from tests.conftest import free_port
from tests.harness.services import REDIS, drop_prefix, new_prefix, postgres_database

LEASE = 2.0


@pytest.fixture
async def supervisor():
    prefix = new_prefix()
    async with postgres_database() as url:
        store = PostgresStore(url)
        await store.open()
        bus = RedisBus(REDIS, journal=store, prefix=prefix)
        await bus.start()
        # A model endpoint nobody listens on: these runs end before (or as) they ask it anything.
        client = AsyncOpenAI(base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="x", max_retries=0)
        sup = ClusterSupervisor(
            queue=RunQueue(bus.broker.redis, prefix=prefix, instance="here", lease_seconds=LEASE),
            lease_seconds=LEASE,
            bus=bus,
            ownership=bus.broker,
            store=store,
            registry=AgentRegistry([Agent(name="a", instructions="x")]),
            runner=Runner(client, bus.publish, settle=bus.settled),
            default_model="m",
            max_running=1,
            instance="here",
        )
        yield sup, bus, store
        await sup.close()
        await bus.close()
        await store.close()
        await client.close()
    drop_prefix(REDIS, prefix)


async def _take(sup: ClusterSupervisor, *, cancelled: bool = False) -> str:
    """Take the queued job and launch it, as the take loop does (its slot acquired); its run id."""
    job, waiting_cancel = await sup._queue.take()
    await sup._executor.slots.acquire()
    sup._taker.launch(job, cancelled or waiting_cancel, leased_at=time.monotonic())
    return job.run_id


async def test_a_run_cancelled_the_moment_it_is_taken_still_ends_and_gives_its_slot_back(supervisor):
    sup, _, store = supervisor
    handle = await sup.start("a", "hi")  # queued; no take loop runs here: the test takes it
    assert await _take(sup, cancelled=True) == handle.id  # a cancel was waiting for it
    await asyncio.wait_for(sup._executor.runs[handle.id].task, 5)
    assert (await store.get_run(handle.id)).status == "cancelled"
    assert sup._executor.slots.free == 1 and handle.id not in sup._executor.runs


async def test_a_cancel_while_a_run_is_queued_ends_it_there_and_one_while_admitting_waits_for_its_take(supervisor):
    sup, _, store = supervisor
    queued = await sup.start("a", "hi")
    assert await sup.cancel(queued.id) == "queued"
    assert (await store.get_run(queued.id)).status == "cancelled"
    assert await sup._queue.size() == 0 and await sup._queue.owner(queued.id) is None
    # A run still being admitted (its job not queued yet): the cancel waits for whoever takes it.
    await sup._queue.admitting("r-admitting", 60)
    assert await sup._queue.cancel("r-admitting") == "admitting"
    await sup._queue.push(Job(run_id="r-admitting", agent="a", input="hi", model="m", queued_at=time.time()))
    job, cancelled = await sup._queue.take()
    assert job.run_id == "r-admitting" and cancelled


async def _held_mid_run(sup: ClusterSupervisor, bus: Node[RedisBroker]) -> tuple[str, asyncio.Task]:
    """A run taken here whose lease was not renewed for too long (Redis away): the owner holds it.
    Returns its id and a publish of it, waiting."""
    handle = await sup.start("a", "hi")
    await _take(sup)
    sup._leases.leased(handle.id, time.monotonic() - HOLD_AFTER * LEASE - 0.1)  # not renewed for too long
    sup._leases.hold_stale()
    publishing = asyncio.create_task(bus.publish(Token(run_id=handle.id, text="held")))
    for _ in range(10):
        await asyncio.sleep(0)  # (let the run and the publish run until they wait)
    assert not publishing.done()
    return handle.id, publishing


async def test_an_owner_whose_lease_may_have_run_out_holds_the_run_and_lets_it_go_on_once_it_renews(supervisor):
    sup, bus, store = supervisor
    run_id, publishing = await _held_mid_run(sup, bus)
    await store.flush()
    assert [p.type for p in await store.events(run_id, 0, 10)] == ["run.queued"]  # nothing while held
    run = sup._executor.runs[run_id]
    await sup._leases.renew()  # Redis answers: the lease is still ours
    held = await asyncio.wait_for(publishing, 5)
    await asyncio.wait_for(run.task, 5)
    assert not run.handed_over
    summary = await store.get_run(run_id)  # it ended here, as it would have (its model is unreachable)
    assert summary.status == "failed" and "cannot reach the model endpoint" in summary.error
    events = await store.events(run_id, 0, 100)
    assert [p.seq for p in events] == list(range(1, len(events) + 1)) and held.seq < len(events)
    assert events[held.seq - 1].type == "token" and events[-1].type == "run.finished"


async def test_a_held_run_whose_lease_another_instance_claimed_stops_without_ending(supervisor):
    sup, bus, store = supervisor
    run_id, publishing = await _held_mid_run(sup, bus)
    run = sup._executor.runs[run_id]
    # Cut off alone, this instance let its lease run out; another instance claimed the run.
    await bus.broker.redis.zadd(sup._queue._leases, {run_id: 0})
    other = RunQueue(
        bus.broker.redis, prefix=sup._queue._leases.removesuffix("leases"), instance="other", lease_seconds=LEASE
    )
    assert await other.claim(run_id)
    await sup._leases.renew()
    with pytest.raises(Fenced):
        await asyncio.wait_for(publishing, 5)
    await asyncio.wait_for(run.task, 5)
    assert run.handed_over and run.cancel_reason == "lease lost"
    await store.flush()
    summary = await store.get_run(run_id)
    assert summary.status in ("queued", "running")  # not ended here: the instance that claimed it ends it
    assert [p.type for p in await store.events(run_id, 0, 10)] == ["run.queued"]
    assert sup._executor.slots.free == 1


async def test_cancelling_a_held_run_answers_unavailable_at_once(supervisor):
    sup, bus, _ = supervisor
    run_id, publishing = await _held_mid_run(sup, bus)
    with pytest.raises(Unavailable, match="try again"):
        await asyncio.wait_for(sup.cancel(run_id), 1)
    await sup._leases.renew()  # (Redis answers: the run goes on, and ends as it would have)
    await asyncio.wait_for(publishing, 5)


async def test_a_run_held_at_shutdown_is_stopped_without_an_end_for_whoever_claims_it(supervisor):
    sup, bus, store = supervisor
    run_id, publishing = await _held_mid_run(sup, bus)
    run = sup._executor.runs[run_id]
    sup._executor.stop_each(sup._stop)
    with pytest.raises(Fenced):
        await asyncio.wait_for(publishing, 5)
    await asyncio.wait_for(run.task, 5)
    assert run.handed_over
    await store.flush()
    assert [p.type for p in await store.events(run_id, 0, 10)] == ["run.queued"]
