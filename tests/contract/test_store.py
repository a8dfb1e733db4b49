"""The store contract, run over every backend: SQLite and PostgreSQL (a database of the test's own)."""

from __future__ import annotations

import asyncio

import pytest

from runwatch.agents.bus import MemoryBus
from runwatch.agents.events import (
    ApprovalRequested,
    ApprovalResolved,
    Published,
    RunFinished,
    RunQueued,
    RunStarted,
    StepFinished,
    Token,
    ToolFinished,
    Totals,
    Usage,
)
from runwatch.agents.store import PostgresStore, RunQuery, SQLiteStore
from tests.harness.services import postgres_database


@pytest.fixture
def bus(store):
    return MemoryBus(journal=store)


async def _run(bus, run_id: str, *, finish: bool = True, tokens: int = 3) -> None:
    await bus.publish(RunQueued(run_id=run_id, agent="demo", input="hi", model="m"))
    await bus.publish(RunStarted(run_id=run_id, agent="demo"))
    for i in range(tokens):
        await bus.publish(Token(run_id=run_id, text=str(i)))
    await bus.publish(ToolFinished(run_id=run_id, call_id="c", tool="t"))
    await bus.publish(
        StepFinished(run_id=run_id, index=0, finish_reason="stop", usage=Usage(input_tokens=7, output_tokens=tokens))
    )
    if finish:
        await bus.publish(RunFinished(run_id=run_id, status="succeeded", totals=Totals()))


async def test_events_read_back_in_order_with_the_same_bytes(store, bus):
    await _run(bus, "r1")
    await store.flush()
    events = await store.events("r1", 0, 100)
    assert [p.seq for p in events] == list(range(1, 9))
    assert events[2].data == bus.recent("r1", 2, 1)[0].data
    assert [p.seq for p in await store.events("r1", 5, 2)] == [6, 7]


async def test_summaries_follow_the_events(store, bus):
    await _run(bus, "r1", tokens=4)
    await store.flush()
    summary = await store.get_run("r1")
    assert summary.status == "succeeded" and summary.input_tokens == 7 and summary.output_tokens == 4
    assert summary.tool_calls == 1 and summary.steps == 1 and summary.last_seq == 9
    assert summary.started_at is not None and summary.finished_at >= summary.started_at
    assert await store.get_run("nope") is None


async def test_list_filters_and_pages(store, bus):
    for i in range(5):
        await _run(bus, f"r{i}", finish=i % 2 == 0)
    await store.flush()
    page = await store.list_runs(RunQuery(limit=2))
    assert [r.id for r in page.runs] == ["r4", "r3"] and page.next
    rest = await store.list_runs(RunQuery(limit=10, cursor=page.next))
    assert [r.id for r in rest.runs] == ["r2", "r1", "r0"] and rest.next is None
    assert [r.id for r in (await store.list_runs(RunQuery(status="running"))).runs] == ["r3", "r1"]


async def test_unfinished_runs_are_the_ones_left_queued_or_running(store, bus):
    await _run(bus, "alive", finish=False)
    await _run(bus, "done")
    await store.flush()
    assert [r.id for r in await store.unfinished_runs()] == ["alive"]
    assert await store.head("alive") == 7 and await store.head("nope") == 0


async def test_a_threads_runs_and_its_live_ones_oldest_first(store, bus):
    for run_id, thread in (("t0", "th"), ("t1", "th"), ("x", "other"), ("t2", "th"), ("t3", "th")):
        await bus.publish(RunQueued(run_id=run_id, agent="demo", input="hi", model="m", thread=thread))
    await bus.publish(RunFinished(run_id="t1", status="succeeded", totals=Totals()))
    await store.flush()
    assert [r.id for r in await store.thread_runs("th")] == ["t0", "t1", "t2", "t3"]
    assert [r.id for r in await store.thread_runs("th", limit=2)] == ["t2", "t3"]
    assert [r.id for r in await store.thread_runs("th", limit=2, before="t3")] == ["t1", "t2"]
    assert await store.thread_runs("none") == []
    assert await store.thread_live("th") == ["t0", "t2", "t3"]
    assert await store.thread_live("th", before="t2") == ["t0"]


async def test_a_run_waits_while_an_approval_is_pending(store, bus):
    await bus.publish(RunQueued(run_id="r", agent="demo", input="hi", model="m"))
    await bus.publish(RunStarted(run_id="r", agent="demo"))
    asked = {"call_id": "c", "tool": "t", "arguments": {}, "reason": "", "expires_at": 0.0}
    statuses = []
    for event in (
        ApprovalRequested(run_id="r", approval_id="a", **asked),
        ApprovalRequested(run_id="r", approval_id="b", **asked),
        ApprovalResolved(run_id="r", approval_id="a", decision="approved", waiting=True),
        ApprovalResolved(run_id="r", approval_id="b", decision="denied"),
    ):
        await bus.publish(event)
        await store.flush()
        statuses.append((await store.get_run("r")).status)
    assert statuses == ["waiting", "waiting", "waiting", "running"]


async def test_the_epoch_is_kept_in_the_database(tmp_path):
    first = SQLiteStore(tmp_path / "e.sqlite3")
    await first.open()
    await first.close()
    again = SQLiteStore(tmp_path / "e.sqlite3")
    await again.open()
    other = SQLiteStore(tmp_path / "other.sqlite3")
    await other.open()
    assert again.epoch == first.epoch and other.epoch != first.epoch
    await again.close()
    await other.close()


async def test_reads_do_not_wait_for_pending_writes(store, bus):
    await _run(bus, "r1")
    await store.flush()
    for i in range(100_000):
        store.append(Published("other", i + 1, "token", b'{"type":"token"}'))
    assert len(await store.events("r1", 0, 100)) == 8
    assert store.unwritten > 0  # answered while the big batch was still being written
    await store.flush()
    assert store.unwritten == 0


async def test_a_full_write_buffer_applies_backpressure_and_loses_nothing(store, bus):
    class Probe:
        most = 0

        def accept(self, published) -> None:
            Probe.most = max(Probe.most, store.pending)

        async def ready(self) -> None:
            return None

    bus.add_sink(Probe())
    await _run(bus, "big", tokens=5_000)
    await store.flush()
    assert 0 < Probe.most <= 101  # bound 100, plus the one event whose publish is waiting
    assert len(await store.events("big", 0, 10_000)) == 5_005


async def test_retention_deletes_finished_runs_and_their_events_only(store, bus):
    await _run(bus, "old")
    await _run(bus, "live", finish=False)
    await store.flush()
    assert await store.delete_finished(before=0.0) == 0  # nothing finished before 1970
    assert await store.delete_finished(before=9e9) == 1
    assert await store.get_run("old") is None and await store.events("old", 0, 100) == []
    assert (await store.get_run("live")).status == "running" and await store.head("live") == 7


async def test_a_retried_batch_changes_nothing_twice(store, bus):
    await _run(bus, "r1")
    await store.flush()
    again = await store.events("r1", 0, 100)
    for p in again:  # the same events written again, as after an acknowledgement that got lost
        store.append(Published(p.run_id, p.seq, p.type, p.data))
    await store.flush()
    summary = await store.get_run("r1")
    assert summary.steps == 1 and summary.tool_calls == 1 and summary.input_tokens == 7
    assert [p.data for p in await store.events("r1", 0, 100)] == [p.data for p in again]


async def test_postgres_keeps_its_epoch_and_two_instances_migrate_one_database_at_once():
    from runwatch.agents.store.migrations import latest

    async with postgres_database() as url:
        stores = [PostgresStore(url) for _ in range(3)]
        await asyncio.gather(*(s.open() for s in stores))  # three instances starting together
        assert len({s.epoch for s in stores}) == 1
        async with stores[0].pool.acquire() as conn:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == list(range(1, latest() + 1))
        for s in stores:
            await s.close()
        again = PostgresStore(url)
        await again.open()
        assert again.epoch == stores[0].epoch
        await again.close()


async def test_an_unreachable_postgres_is_a_clear_error():
    from runwatch.agents.store import StoreUnavailable
    from tests.conftest import free_port

    s = PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    with pytest.raises(StoreUnavailable, match="RUNWATCH_DATABASE_URL"):
        await s.open()


async def test_postgres_refuses_positions_another_instance_wrote_and_says_so():
    async with postgres_database() as url:
        first, second = PostgresStore(url), PostgresStore(url)
        await first.open()
        await second.open()
        conflicts, shown = [], []
        second.on_conflict(conflicts.append)
        second.on_durable(lambda batch: shown.extend(batch))
        for seq in (1, 2, 3):
            first.append(Published("r", seq, "token", b'{"owner":"first","seq":%d}' % seq))
        await first.flush()
        # A stale owner writes the same positions with its own content, and one more after them.
        for seq in (3, 4):
            second.append(Published("r", seq, "token", b'{"owner":"second","seq":%d}' % seq))
        second.append(Published("other", 1, "token", b'{"owner":"second"}'))
        await second.flush()
        assert conflicts == ["r"] and [(p.run_id, p.seq) for p in shown] == [("other", 1)]
        events = await first.events("r", 0, 10)
        assert [p.data for p in events] == [b'{"owner":"first","seq":%d}' % s for s in (1, 2, 3)]
        await first.close()
        await second.close()


async def test_a_nul_character_in_an_input_is_stored_not_a_stuck_writer(store, bus):
    await bus.publish(RunQueued(run_id="nul", agent="demo", input="a\x00b", model="m"))
    await asyncio.wait_for(store.flush(), 5)
    assert (await store.get_run("nul")).input in ("a\x00b", "a\ufffdb")  # PostgreSQL text holds no NUL
    assert len(await store.events("nul", 0, 10)) == 1


async def test_concurrent_admissions_never_pass_a_tenant_s_quota(store):
    answers = await asyncio.gather(*(store.admit(f"r{i}", "acme", 5) for i in range(30)))
    assert sorted(answers)[:5] == [0, 1, 2, 3, 4] and sum(a < 5 for a in answers) == 5, answers
    assert await store.admit("b1", "beta", 5) == 0  # another tenant counts apart


async def test_an_admitted_run_counts_once_until_it_finishes_and_a_start_given_up_frees_its_place(store, bus):
    assert await store.admit("r1", "acme", 2) == 0
    await bus.publish(RunQueued(run_id="r1", agent="demo", input="hi", model="m", tenant="acme"))
    await store.flush()
    assert await store.admit("r2", "acme", 2) == 1  # r1 counts once: its row now, not its admission too
    assert await store.admit("r3", "acme", 2) == 2  # full: r3 is not admitted
    await store.unadmit("r2")  # r2 was not started after all
    assert await store.admit("r4", "acme", 2) == 1
    await bus.publish(RunFinished(run_id="r1", status="succeeded", totals=Totals()))
    await store.flush()
    assert await store.admit("r5", "acme", 2) == 1  # r4 only


async def test_an_admission_whose_run_never_came_stops_counting(store, monkeypatch):
    from runwatch.agents.store import admission

    monkeypatch.setattr(admission, "ADMISSION_SECONDS", -1.0)  # (its instance died while admitting it)
    assert await store.admit("r1", "acme", 1) == 0
    assert await store.admit("r2", "acme", 1) == 0
