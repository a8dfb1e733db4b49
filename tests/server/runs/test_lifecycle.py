"""Process lifecycle: history survives restarts, interrupted runs are marked, SIGTERM cancels cleanly."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tests.harness.waiting import eventually
from tests.harness.watcher import assert_contiguous, text_of


async def test_history_survives_a_restart(make_server, tmp_path):
    srv = make_server(data_dir=tmp_path / "data")
    w = await srv.watcher()
    run = await srv.start_run({"tokens": 40, "tool_calls": 1})
    await w.subscribe(run)
    before = await w.until_finished(run)
    await w.close()
    srv.stop()

    again = make_server(data_dir=tmp_path / "data")
    async with again.client() as c:
        summary = (await c.get(f"/api/runs/{run}")).json()
        assert summary["status"] == "succeeded" and summary["tool_calls"] == 1 and summary["last_seq"] == len(before)
        replay = (await c.get(f"/api/runs/{run}/events")).json()["events"]
    assert replay == before
    late = await again.watcher()
    await late.subscribe(run)
    assert await late.until_finished(run) == before
    await late.close()


async def test_runs_alive_when_the_process_died_are_marked_failed_interrupted(make_server, tmp_path):
    srv = make_server(data_dir=tmp_path / "data")
    w = await srv.watcher()
    run = await srv.start_run({"tokens": 100_000, "rate": 50})
    await w.subscribe(run)
    await w.wait_for(lambda m: m.get("run_id") == run and m.get("type") == "token")
    srv.stop(signal.SIGKILL)

    again = make_server(data_dir=tmp_path / "data")
    async with again.client() as c:
        summary = (await c.get(f"/api/runs/{run}")).json()
        events = (await c.get(f"/api/runs/{run}/events")).json()["events"]
    assert summary["status"] == "failed" and summary["error"] == "interrupted"
    assert_contiguous(events)
    assert events[-1]["type"] == "run.finished" and events[-1]["error"] == "interrupted"
    assert any(line.get("event") == "run.interrupted" for line in again.log_lines())


async def test_a_resumable_agent_s_run_continues_after_the_process_died(make_server, tmp_path):
    env = {"RUNWATCH_AGENTS": "tests.harness.agents_resumable"}
    srv = make_server(data_dir=tmp_path / "data", env=env)
    w = await srv.watcher()
    run = await srv.start_run({"tokens": 300, "rate": 100}, agent="steady")
    await w.subscribe(run)
    await w.wait_for(lambda m: m.get("run_id") == run and m.get("type") == "token" and m["seq"] > 10)
    srv.stop(signal.SIGKILL)
    seen = w.events(run)

    again = make_server(data_dir=tmp_path / "data", env=env)  # one process, no Redis: it goes on here
    late = await again.watcher()
    await late.subscribe(run, after=seen[-1]["seq"])
    rest = await late.until_finished(run, timeout=30)
    events = seen + rest
    assert_contiguous(events)
    assert rest[-1]["status"] == "succeeded"
    resumed = next(i for i, e in enumerate(events) if e["type"] == "run.resumed")
    assert len(text_of(events[resumed:]).split()) == 300
    await late.close()


async def test_sigterm_cancels_running_runs_delivers_their_end_and_records_them(make_server, tmp_path):
    srv = make_server(data_dir=tmp_path / "data")
    w = await srv.watcher()
    runs = [await srv.start_run({"tokens": 100_000, "rate": 50}) for _ in range(2)]
    for run in runs:
        await w.subscribe(run)
        await w.wait_for(lambda m, run=run: m.get("run_id") == run and m.get("type") == "token")
    srv.stop(signal.SIGTERM)
    closed = await w.wait_closed(timeout=5)
    assert closed.code == 1001
    for run in runs:  # every final event reached the watcher before the close
        events = w.events(run)
        assert_contiguous(events)
        assert events[-1]["type"] == "run.finished" and events[-1]["error"] == "the server shut down"
    again = make_server(data_dir=tmp_path / "data")
    async with again.client() as c:
        for run in runs:
            summary = (await c.get(f"/api/runs/{run}")).json()
            assert summary["status"] == "cancelled" and summary["error"] == "the server shut down"
            events = (await c.get(f"/api/runs/{run}/events")).json()["events"]
            assert_contiguous(events)
            assert events[-1]["type"] == "run.finished"


def _context_switches(pid: int) -> int:
    """How many times the process's threads have gone to sleep and been woken, so far."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


async def test_an_idle_server_wakes_about_twice_a_second(make_server):
    """uvicorn alone wakes every 100 ms; runwatch's server ticks once a second (and its runtime once)."""
    srv = make_server()
    before = _context_switches(srv.proc.pid)
    await asyncio.sleep(3)  # measuring a rate over a window: nothing to wait for
    woken = _context_switches(srv.proc.pid) - before
    assert woken <= 15, f"{woken} wake-ups in 3 s"


async def test_the_server_freezes_its_startup_heap(make_server):
    """Full collections do not walk the app, its routes and the SDKs' modules (bench/HISTORY.md)."""
    srv = make_server(env={"RUNWATCH_LOG_LEVEL": "debug"})

    def frozen() -> list[dict]:  # logged as the server starts listening: maybe just after /api/health answered
        return [line for line in srv.log_lines() if line.get("event") == "server.heap_frozen"]

    await eventually(frozen, what="the server.heap_frozen log line")
    assert frozen()[0]["objects"] > 50_000
