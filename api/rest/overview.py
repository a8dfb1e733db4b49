"""REST: the overview page's figures over a window of time, from the store (no Prometheus needed)."""

from __future__ import annotations

import math
import time
from typing import Annotated

from litestar import Request, get
from litestar.params import Parameter

from runwatch.agents.identity import Role
from runwatch.agents.runs.service import RunService
from runwatch.agents.store.aggregates import Figures, InstanceLoad, Window
from runwatch.api.auth.web import requires
from runwatch.api.http_errors import error_responses
from runwatch.api.rest.runs import AUTH_ERRORS

#: Bars per window in ``per_minute`` (each ``bucket`` seconds, at least ``MIN_BUCKET``).
BARS = 60
MIN_BUCKET = 10.0


class Overview(Figures, kw_only=True):
    #: The window's length (seconds), and its bounds (epoch seconds).
    window: float
    since: float
    until: float
    #: Seconds per bar of ``per_minute``: a bar's ``runs`` per minute is ``runs * 60 / bucket``.
    bucket: float
    #: When the figures were read (epoch seconds; ``until`` is the end of the last bar, ahead of it).
    now: float
    #: Each instance's capacity now (for an admin; a tenant's principal gets none: instances serve
    #: every tenant).
    instances: list[InstanceLoad]


@get(
    "/api/overview",
    summary="Runs, success rate, durations, TTFT, speed by model, cost by agent, queue and capacity over a window",
    tags=["runs"],
    guards=[requires(Role.VIEWER)],
    responses=error_responses(*AUTH_ERRORS),
)
async def overview(
    request: Request,
    service: RunService,
    window: Annotated[
        float, Parameter(ge=300, le=30 * 86400, description="Seconds back from now (5 min to 30 days)")
    ] = 3600,
    tenant: Annotated[str | None, Parameter(max_length=64, description="An admin's choice of tenant")] = None,
) -> Overview:
    # The service keeps a non-admin to its own tenant (``tenant`` is an admin's choice).
    bucket = max(MIN_BUCKET, math.ceil(window / BARS))
    now = time.time()
    # Bars end at a whole bucket, so a refresh moves them by whole bars instead of reshaping all.
    until = (math.floor(now / bucket) + 1) * bucket
    since = until - bucket * math.ceil(window / bucket)
    figures, instances = await service.overview(
        Window(since=since, until=until, bucket=bucket, tenant=tenant), principal=request.user
    )
    return Overview(
        **{f: getattr(figures, f) for f in figures.__struct_fields__},
        window=window,
        since=since,
        until=until,
        bucket=bucket,
        now=round(now, 3),
        instances=instances if request.user.scope is None else [],
    )
