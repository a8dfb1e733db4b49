"""Many instances: three ``runwatch serve`` processes sharing the machine's Redis (a key prefix of
the test's own) and PostgreSQL (a database of the test's own). No sticky sessions: any instance
runs, streams, resumes and cancels any run."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx

from tests.cluster.instances import by_name, started_on
from tests.conftest import CLUSTER_LEASE as LEASE
from tests.conftest import Server
from tests.harness.waiting import eventually
from tests.harness.watcher import assert_contiguous, text_of


async def test_a_watcher_on_one_instance_follows_a_run_executing_on_another_token_by_token(cluster):
    servers = cluster(3)
    run_id = await servers[0].start_run({"tokens": 200, "rate": 200})
    owner = await started_on(servers[0], run_id)
    other = next(s for s in servers if s.env["RUNWATCH_INSTANCE"] != owner)
    w = await other.watcher()
    await w.subscribe(run_id)
    events = await w.until_finished(run_id)
    assert_contiguous(events)
    assert events[-1]["status"] == "succeeded" and len(text_of(events).split()) == 200
    async with other.client() as c:
        replay = (await c.get(f"/api/runs/{run_id}/events", params={"limit": 1000})).json()
    assert [e["seq"] for e in replay["events"]] == [e["seq"] for e in events]


async def test_cancel_through_any_instance_ends_the_run_within_a_second(cluster):
    servers = cluster(3)
    run_id = await servers[0].start_run({"tokens": 100_000, "rate": 50})
    owner = await started_on(servers[0], run_id)
    third = next(s for s in servers[1:] if s.env["RUNWATCH_INSTANCE"] != owner)
    w = await servers[0].watcher()
    await w.subscribe(run_id)
    await w.wait_for(lambda m: m.get("type") == "token")
    asked = time.monotonic()
    async with third.client() as c:
        r = await c.post(f"/api/runs/{run_id}/cancel")
    assert r.status_code == 202, r.text
    finished = await w.wait_for(lambda m: m.get("type") == "run.finished", timeout=5)
    assert time.monotonic() - asked < 1.0 and finished["status"] == "cancelled"
    assert_contiguous(w.events(run_id))


async def test_a_queued_run_is_cancelled_from_any_instance(cluster):
    (a, b) = cluster(2, RUNWATCH_MAX_RUNNING="1")
    blockers = [await a.start_run({"tokens": 100_000, "rate": 20}) for _ in range(2)]
    queued = await a.start_run({"tokens": 5})
    async with b.client() as c:
        assert (await c.post(f"/api/runs/{queued}/cancel")).status_code == 202
        summary = (await c.get(f"/api/runs/{queued}")).json()
        assert summary["status"] == "cancelled"
        for run_id in blockers:
            await c.post(f"/api/runs/{run_id}/cancel")


async def _kill_owner_mid_run(servers: list[Server], agent: str, text: dict) -> tuple[str, Server, list[dict]]:
    """Start a run, kill -9 its instance mid-stream; returns (run id, a survivor, events seen so far)."""
    run_id = await servers[0].start_run(text, agent=agent)
    owner = by_name(servers, await started_on(servers[0], run_id))
    survivor = next(s for s in servers if s is not owner)
    w = await survivor.watcher()
    await w.subscribe(run_id)
    await w.wait_for(lambda m: m.get("type") == "token" and len(w.events(run_id)) > 20)
    owner.proc.send_signal(signal.SIGKILL)
    owner.proc.wait()
    return run_id, survivor, w


async def test_a_killed_instance_s_run_ends_interrupted_within_the_lease(cluster):
    servers = cluster(3)
    run_id, survivor, w = await _kill_owner_mid_run(servers, "fragile", {"tokens": 100_000, "rate": 100})
    killed = time.monotonic()
    await w.close()  # the survivor's watcher may have been cut when the owner went: read it afresh
    w = await survivor.watcher()
    await w.subscribe(run_id)
    finished = await w.wait_for(lambda m: m.get("type") == "run.finished", timeout=LEASE * 4)
    assert time.monotonic() - killed < LEASE + 1  # noticed within the lease (+1 s to end it and deliver)
    assert finished["status"] == "failed" and finished["error"] == "interrupted"
    assert_contiguous(w.events(run_id))


async def test_a_resumable_run_is_finished_by_another_instance_with_every_token_in_order(cluster):
    servers = cluster(3)
    scenario = {"tokens": 400, "rate": 150}
    run_id, _, w = await _kill_owner_mid_run(servers, "steady", scenario)
    events = await w.until_finished(run_id, timeout=30)
    assert_contiguous(events)
    assert events[-1]["status"] == "succeeded", events[-1]
    resumed = [i for i, e in enumerate(events) if e["type"] == "run.resumed"]
    assert len(resumed) == 1
    after = events[resumed[0] :]
    assert len(text_of(after).split()) == 400  # the interrupted step ran again, whole
    assert events[resumed[0]]["instance"] != events[1]["instance"]


async def test_sigterm_drains_then_hands_resumable_runs_over_and_cancels_the_rest(cluster):
    a, b = cluster(2, RUNWATCH_DRAIN_SECONDS="1", RUNWATCH_MAX_RUNNING="2")
    steady = await a.start_run({"tokens": 500, "rate": 100}, agent="steady")
    fragile = await a.start_run({"tokens": 100_000, "rate": 50}, agent="fragile")
    owners = {run: by_name([a, b], await started_on(b, run)) for run in (steady, fragile)}
    # Stop the instance executing the resumable run.
    leaving = owners[steady]
    staying = b if leaving is a else a
    w = await staying.watcher()
    for run in (steady, fragile):
        await w.subscribe(run)
    await w.wait_for(lambda m: m.get("run_id") == steady and m.get("type") == "token")
    leaving.stop(signal.SIGTERM)
    events = await w.until_finished(steady, timeout=30)
    assert_contiguous(events)
    assert events[-1]["status"] == "succeeded"
    resumed = next(e for e in events if e["type"] == "run.resumed")
    assert resumed["instance"] == staying.env["RUNWATCH_INSTANCE"]
    if owners[fragile] is leaving:  # not resumable: cancelled when the drain ran out
        end = (await w.until_finished(fragile))[-1]
        assert end["status"] == "cancelled" and end["error"] == "the server shut down"
    else:
        async with staying.client() as c:
            await c.post(f"/api/runs/{fragile}/cancel")


async def test_a_watcher_resumes_on_another_instance_with_no_gap_and_no_duplicate(cluster):
    a, b = cluster(2)
    run_id = await a.start_run({"tokens": 300, "rate": 300})
    first = await a.watcher()
    await first.subscribe(run_id)
    await first.wait_for(lambda m: m.get("type") == "token" and m["seq"] > 30)
    await first.close()
    seen = first.events(run_id)
    second = await b.watcher()
    await second.subscribe(run_id, after=seen[-1]["seq"])
    rest = await second.until_finished(run_id)
    assert_contiguous(seen + rest)
    assert len(text_of(seen + rest).split()) == 300


async def test_two_hundred_runs_started_through_three_instances_run_exactly_once_each(cluster):
    servers = cluster(3)
    async with httpx.AsyncClient(timeout=10, headers=servers[0].auth) as c:  # one admin key works on all

        async def start(i: int) -> str:
            r = await c.post(
                servers[i % 3].url + "/api/runs", json={"agent": "demo", "input": json.dumps({"tokens": 5})}
            )
            assert r.status_code == 202, r.text
            return r.json()["id"]

        ids = await asyncio.gather(*(start(i) for i in range(200)))

        async def all_finished() -> bool:
            page = (await c.get(servers[0].url + "/api/runs", params={"limit": 500, "status": "succeeded"})).json()
            return len(page["runs"]) == 200

        await eventually(all_finished, timeout=60)
        executed: dict[str, int] = {}
        for run_id in ids:
            events = (await c.get(servers[1].url + f"/api/runs/{run_id}/events", params={"limit": 100})).json()
            types = [e["type"] for e in events["events"]]
            assert types.count("run.started") == 1 and types.count("run.finished") == 1, types
            owner = next(e["instance"] for e in events["events"] if e["type"] == "run.started")
            executed[owner] = executed.get(owner, 0) + 1
    assert sum(executed.values()) == 200 and len(executed) == 3, executed
    # Runs queued on one instance and run on another leave no instance's gauges off.
    async with httpx.AsyncClient(timeout=10, headers=servers[0].auth) as c:
        for server in servers:
            metrics = (await c.get(server.url + "/metrics")).text
            gauges = [
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith(("runwatch_runs_active{", "runwatch_runs_queued{"))
            ]
            assert gauges and all(g == 0 for g in gauges), [
                line for line in metrics.splitlines() if line.startswith("runwatch_runs_")
            ]
