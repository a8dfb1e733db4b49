"""The cluster supervisor in-process, on the machine's Redis (a prefix of the test's own) and
PostgreSQL (a database of its own): what happens to a run at the edges of its ownership."""

from __future__ import annotations

import asyncio
import time

import pytest
from openai import AsyncOpenAI

from runwatch.agents import Agent
from runwatch.agents.agent import AgentRegistry
from runwatch.agents.bus import Fenced
from runwatch.agents.bus.redis import RedisBus
from runwatch.agents.cluster import ClusterSupervisor
from runwatch.agents.events import Token
from runwatch.agents.leases import FENCE_AFTER
from runwatch.agents.run_queue import Job, RunQueue
from runwatch.agents.runner import Runner
from runwatch.agents.store import PostgresStore
from tests.conftest import free_port
from tests.services import REDIS, drop_prefix, new_prefix, postgres_database

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
            queue=RunQueue(bus.redis, prefix=prefix, instance="here", lease_seconds=LEASE),
            lease_seconds=LEASE,
            bus=bus,
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
    await sup._slots.acquire()
    sup._launch(job, cancelled or waiting_cancel, leased_at=time.monotonic())
    return job.run_id


async def test_a_run_cancelled_the_moment_it_is_taken_still_ends_and_gives_its_slot_back(supervisor):
    sup, _, store = supervisor
    handle = await sup.start("a", "hi")  # queued; no take loop runs here: the test takes it
    assert await _take(sup, cancelled=True) == handle.id  # a cancel was waiting for it
    await asyncio.wait_for(sup._runs[handle.id].task, 5)
    assert (await store.get_run(handle.id)).status == "cancelled"
    assert sup._slots._value == 1 and handle.id not in sup._runs


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


async def test_an_owner_whose_lease_may_have_run_out_stops_the_run_without_ending_it(supervisor):
    sup, bus, store = supervisor
    handle = await sup.start("a", "hi")
    await _take(sup)
    run = sup._runs[handle.id]
    sup._leased_at[handle.id] = time.monotonic() - FENCE_AFTER * LEASE - 0.1  # not renewed for too long
    sup._fence_stale()
    await asyncio.wait_for(run.task, 5)
    assert run.handed_over and run.cancel_reason == "lease lost"
    with pytest.raises(Fenced):
        await bus.publish(Token(run_id=handle.id, text="late"))
    await store.flush()
    summary = await store.get_run(handle.id)
    assert summary.status in ("queued", "running")  # not ended here: the instance that claims it ends it
    assert sup._slots._value == 1
