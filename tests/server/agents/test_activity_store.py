"""The store's figures of each agent (``agents/store/activity.py``), on SQLite and PostgreSQL: runs
by status in the window, runs live now, durations, when each agent was last active and when its
runs were lost — with known timestamps, so every figure is exact."""

from __future__ import annotations

from runwatch.agents.events import Published, RunFinished, RunQueued, RunStarted, Totals, encode
from runwatch.agents.store.aggregates import Percentiles, Window

TS = 1000.0
WINDOW = Window(since=TS - 60, until=TS + 60, bucket=120)
LOST = "agent_lost"


async def add_run(
    store,
    run_id: str,
    *,
    agent: str,
    at: float = TS,
    external: bool = False,
    tenant: str = "default",
    end: tuple[str, float, str | None] | None = None,
) -> None:
    """A run created and started at ``at``; ``end``: its status, end time and error (None: live)."""
    events: list = [
        RunQueued(run_id=run_id, agent=agent, input="hi", model="m", tenant=tenant, external=external, ts=at),
        RunStarted(run_id=run_id, agent=agent, external=external, ts=at),
    ]
    if end is not None:
        status, ended, error = end
        events.append(RunFinished(run_id=run_id, status=status, error=error, totals=Totals(), ts=ended))
    for seq, event in enumerate(events, 1):
        event.seq = seq
        store.append(Published(run_id, seq, type(event).__struct_config__.tag, encode(event), event))
    await store.flush()


def by_name(activity) -> dict:
    return {a.agent: a for a in activity.agents}


async def test_each_agent_counts_its_runs_of_the_window_and_those_live_now(store):
    await add_run(store, "d1", agent="demo", end=("succeeded", TS + 2, None))
    await add_run(store, "d2", agent="demo", end=("succeeded", TS + 4, None))
    await add_run(store, "d3", agent="demo", end=("cancelled", TS + 10, None))
    await add_run(store, "e1", agent="bot", external=True, end=("failed", TS + 1, "boom"))
    await add_run(store, "e2", agent="bot", external=True, at=TS + 3)  # live
    await add_run(store, "old", agent="bot", external=True, at=TS - 500)  # live, created before the window
    await add_run(store, "gone", agent="other", at=TS - 500, end=("succeeded", TS - 400, None))  # not in it
    agents = by_name(await store.agent_activity(WINDOW, LOST))
    assert set(agents) == {"demo", "bot"}
    demo, bot = agents["demo"], agents["bot"]
    assert (demo.external, demo.runs, demo.succeeded, demo.failed, demo.cancelled) == (False, 3, 2, 0, 1)
    assert (demo.running, demo.queued, demo.last_active, demo.lost_at) == (0, 0, TS + 10, None)
    assert demo.duration == Percentiles(p50=4.0, p95=10.0)
    assert (bot.external, bot.runs, bot.failed, bot.running) == (True, 2, 1, 2)
    assert bot.duration == Percentiles(p50=1.0, p95=1.0) and bot.last_active == TS + 3


async def test_a_lost_runs_end_is_not_its_agents_doing(store):
    await add_run(store, "e1", agent="bot", external=True, at=TS, end=("succeeded", TS + 2, None))
    await add_run(store, "e2", agent="bot", external=True, at=TS + 5, end=("failed", TS + 40, LOST))
    (bot,) = (await store.agent_activity(WINDOW, LOST)).agents
    assert bot.lost_at == TS + 40
    assert bot.last_active == TS + 5  # its last registration: runwatch, not the agent, ended e2


async def test_a_tenant_sees_its_own_agents_only(store):
    await add_run(store, "a", agent="bot", external=True, tenant="acme", end=("succeeded", TS + 1, None))
    await add_run(store, "b", agent="spy", external=True, tenant="umbrella", end=("succeeded", TS + 1, None))
    await add_run(store, "c", agent="spy-live", external=True, tenant="umbrella")
    acme = Window(since=WINDOW.since, until=WINDOW.until, bucket=WINDOW.bucket, tenant="acme")
    assert [a.agent for a in (await store.agent_activity(acme, LOST)).agents] == ["bot"]
    assert set(by_name(await store.agent_activity(WINDOW, LOST))) == {"bot", "spy", "spy-live"}


async def test_the_overview_says_which_agents_are_external(store):
    await add_run(store, "d", agent="demo", end=("succeeded", TS + 1, None))
    await add_run(store, "e", agent="bot", external=True, end=("succeeded", TS + 1, None))
    agents = {a.agent: a.external for a in (await store.overview(WINDOW)).agents}
    assert agents == {"demo": False, "bot": True}
