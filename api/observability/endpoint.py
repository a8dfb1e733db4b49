"""``GET /metrics``: runwatch's metrics plus Litestar's HTTP metrics, in the Prometheus text format.

One ``runwatch serve`` is one process with an in-memory bus, so one scrape target per process is
the correct model (Prometheus sums across targets); prometheus-client's multiprocess mode is not
used because runwatch never forks request workers. See docs/operations.md, "Metrics".
"""

from __future__ import annotations

from litestar import Request, get
from litestar.enums import ScopeType
from litestar.plugins.prometheus import PrometheusConfig
from litestar.response import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from runwatch.agents.errors import ErrorCode, Unauthenticated
from runwatch.agents.identity import Role
from runwatch.api.auth.tokens import same_secret
from runwatch.api.auth.web import principal_of
from runwatch.api.http_errors import error_responses
from runwatch.api.observability.metrics import Metrics
from runwatch.api.settings.config import Settings

#: HTTP request counts and latencies (``runwatch_http_*``), labelled by route template, not path.
http_metrics = PrometheusConfig(
    app_name="runwatch",
    prefix="runwatch_http",
    group_path=True,
    exclude=["^/metrics$"],
    scopes={ScopeType.HTTP},
)


#: The 401 of ``/metrics``: what a first scrape (or curl) needs to be told.
SCRAPE_HELP = (
    "/metrics needs a token: start runwatch with RUNWATCH_METRICS_TOKEN=<a long random string> and scrape "
    "with 'Authorization: Bearer <that string>', or with an admin key (RUNWATCH_METRICS_OPEN=true needs "
    "none: private networks only)"
)


def _may_scrape(request: Request, settings: Settings, metrics: Metrics) -> None:
    """``/metrics`` answers the scrape token (``RUNWATCH_METRICS_TOKEN``), an admin, or anyone when
    ``RUNWATCH_METRICS_OPEN`` (or authentication) is off."""
    s = settings
    if s.metrics.open or not s.auth.on:
        return
    header = request.headers.get("authorization", "")
    if s.metrics.token and header.lower().startswith("bearer ") and same_secret(header[7:].strip(), s.metrics.token):
        return
    try:
        principal = principal_of(request, metrics) if request.scope.get("user") is None else request.user
    except Unauthenticated:  # (no credential, or a refused one: either way, say how to scrape)
        principal = None
    if principal is None or not principal.can(Role.ADMIN):
        raise Unauthenticated(SCRAPE_HELP)


@get(
    "/metrics",
    tags=["ops"],
    summary="Prometheus metrics (the scrape token, or an admin)",
    media_type="text/plain",
    responses=error_responses(ErrorCode.UNAUTHENTICATED),
)
async def metrics(
    request: Request, settings: Settings, metrics: Metrics, metrics_registry: CollectorRegistry
) -> Response[bytes]:
    _may_scrape(request, settings, metrics)
    body = generate_latest(metrics_registry) + generate_latest(REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
