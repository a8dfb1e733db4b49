"""Which instance of a cluster is which, and which one executes a run."""

from __future__ import annotations

from tests.conftest import Server


def by_name(servers: list[Server], name: str) -> Server:
    return next(s for s in servers if s.env["RUNWATCH_INSTANCE"] == name)


async def started_on(server: Server, run_id: str) -> str:
    """The instance executing ``run_id``, from its ``run.started`` event."""
    w = await server.watcher()
    await w.subscribe(run_id)
    started = await w.wait_for(lambda m: m.get("run_id") == run_id and m.get("type") == "run.started")
    await w.close()
    return started["instance"]
