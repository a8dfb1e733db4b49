"""Nothing taken back after a crash: whatever a watcher was shown is in the store after ``kill -9``,
and a watcher resuming from its last seq gets exactly the rest, ending with the run's final event."""

from __future__ import annotations

import signal

from tests.harness.watcher import assert_contiguous


async def _stored(srv, run: str) -> list[dict]:
    events: list[dict] = []
    async with srv.client() as c:
        while True:
            page = (await c.get(f"/api/runs/{run}/events", params={"after": len(events), "limit": 5000})).json()
            events += page["events"]
            if not page["more"]:
                return events


async def test_kill_9_mid_run_loses_nothing_a_watcher_saw_and_reuses_no_position(make_server, tmp_path):
    data = tmp_path / "data"
    for attempt in range(5):
        env = {"RUNWATCH_COALESCE_MS": "0"} if attempt % 2 else {}  # every delta its own event, or coalesced
        srv = make_server(env=env, data_dir=data)
        watcher = await srv.watcher()
        runs = [await srv.start_run({"tokens": 2_000_000, "rate": 0}) for _ in range(3)]
        acks = {run: await watcher.subscribe(run) for run in runs}
        for run in runs:
            await watcher.wait_for(lambda m, run=run: m.get("run_id") == run and m.get("type") == "token", timeout=20)
        srv.stop(signal.SIGKILL)
        seen = {run: watcher.events(run) for run in runs}
        await watcher.close()

        again = make_server(env=env, data_dir=data)
        late = await again.watcher()
        for run in runs:
            before = seen[run]
            assert_contiguous(before)
            ack = await late.subscribe(run, after=before[-1]["seq"]) | {}
            assert ack["epoch"] == acks[run]["epoch"]  # the same log: positions kept their meaning
            rest = await late.until_finished(run)
            assert rest[-1]["type"] == "run.finished" and rest[-1]["error"] == "interrupted"
            assert before + rest == await _stored(again, run), f"attempt {attempt}: watcher and store disagree"
        await late.close()
        again.stop()
