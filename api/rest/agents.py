"""REST: every agent that reported in a window of time — runwatch's own and agents elsewhere (the
ingest API) — with its runs, error rate, durations, last heartbeat and whether it went stale.

**Last heartbeat**: an external agent's last post or poll (``IngestService.last_seen``), or, where
that is not known (a restart since), the latest time one of its runs was registered or ended by it;
one of runwatch's own agents beats while one of its runs is live (now), else at its runs' latest
start or end. **Stale**: an external agent whose run runwatch ended because the agent went silent
past the run's lease (``agent_lost``), and that has not posted or polled since. Its lease is the
threshold the agent set itself (``lease_seconds``, 30 s by default); one heard from again (a post,
a poll, a new run) is not stale any more.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

import msgspec
from litestar import Request, get
from litestar.params import Parameter

from runwatch.agents.identity import Role
from runwatch.agents.ingest.leases import AGENT_LOST
from runwatch.agents.runs.service import RunService
from runwatch.agents.store.activity import AgentActivity
from runwatch.agents.store.aggregates import Percentiles, Window
from runwatch.api.auth.web import principal_of, requires
from runwatch.api.http_errors import error_responses
from runwatch.api.ingest.routes import Ingest
from runwatch.api.rest.runs import AUTH_ERRORS

#: ``active``: runs queued, running or waiting now; ``idle``: none; ``stale``: see the module.
State = Literal["active", "idle", "stale"]


class AgentStatus(msgspec.Struct, kw_only=True):
    name: str
    #: An agent elsewhere reports its runs (the ingest API); false: one of this server's agents.
    external: bool
    state: State
    #: Its runs running or waiting for a person, and queued, now.
    running: int
    queued: int
    #: Runs created in the window, and how those that ended ended.
    runs: int
    succeeded: int
    failed: int
    cancelled: int
    #: failed / (succeeded + failed + cancelled) of the window's runs; null when none ended.
    error_rate: float | None
    #: Durations of its runs of the window that ended (p50, p95); null when none did.
    duration: Percentiles | None
    #: When it was last heard from (epoch seconds; see the module); null: not known.
    last_heartbeat: float | None


class AgentsPage(msgspec.Struct, kw_only=True):
    #: The window's length (seconds) and bounds (epoch seconds; ``until`` is when it was read).
    window: float
    since: float
    until: float
    #: Every agent with a run created in the window or live now: most runs first.
    agents: list[AgentStatus]
    #: True when the durations are of the window's latest 100,000 runs only.
    sampled: bool = False


def status_of(a: AgentActivity, seen: dict[str, float], now: float) -> AgentStatus:
    """One agent's row: its store figures, with its heartbeat (``seen``: when each external agent
    last posted or polled) and state."""
    live = a.running + a.queued
    if a.external:
        times = [t for t in (seen.get(a.agent), a.last_active) if t is not None]
        heartbeat = max(times) if times else None
    else:
        heartbeat = now if live else a.last_active
    stale = a.external and a.lost_at is not None and (heartbeat is None or heartbeat <= a.lost_at)
    ended = a.succeeded + a.failed + a.cancelled
    return AgentStatus(
        name=a.agent,
        external=a.external,
        state="stale" if stale else "active" if live else "idle",
        running=a.running,
        queued=a.queued,
        runs=a.runs,
        succeeded=a.succeeded,
        failed=a.failed,
        cancelled=a.cancelled,
        error_rate=round(a.failed / ended, 4) if ended else None,
        duration=a.duration,
        last_heartbeat=round(heartbeat, 3) if heartbeat is not None else None,
    )


@get(
    "/api/agents/activity",
    summary="Every agent that reported in a window (this server's and external ones): runs, error rate,"
    " p50 duration, last heartbeat, stale",
    tags=["agents"],
    guards=[requires(Role.VIEWER)],
    responses=error_responses(*AUTH_ERRORS),
)
async def agent_activity(
    request: Request,
    service: RunService,
    ingest: Ingest,
    window: Annotated[
        float, Parameter(ge=300, le=30 * 86400, description="Seconds back from now (5 min to 30 days)")
    ] = 3600,
    tenant: Annotated[str | None, Parameter(max_length=64, description="An admin's choice of tenant")] = None,
) -> AgentsPage:
    principal = principal_of(request)  # (the guard has checked it; without one, nothing is read)
    # A non-admin sees its own tenant only; ``tenant`` is an admin's choice (None: every tenant).
    scope = principal.scope if principal.scope is not None else tenant
    now = time.time()
    since = now - window
    activity = await service.store.agent_activity(
        Window(since=since, until=now, bucket=window, tenant=scope), lost=AGENT_LOST
    )
    seen = await ingest.last_seen(scope)
    return AgentsPage(
        window=window,
        since=round(since, 3),
        until=round(now, 3),
        agents=[status_of(a, seen, now) for a in activity.agents],
        sampled=activity.sampled,
    )
