"""``GET /metrics``: runwatch's metrics plus Litestar's HTTP metrics, in the Prometheus text format.

One ``runwatch serve`` is one process with an in-memory bus, so one scrape target per process is
the correct model (Prometheus sums across targets); prometheus-client's multiprocess mode is not
used because runwatch never forks request workers. See README, "Metrics".
"""

from __future__ import annotations

from litestar import get
from litestar.enums import ScopeType
from litestar.plugins.prometheus import PrometheusConfig
from litestar.response import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from runwatch.api.runtime import Runtime

#: HTTP request counts and latencies (``runwatch_http_*``), labelled by route template, not path.
http_metrics = PrometheusConfig(
    app_name="runwatch",
    prefix="runwatch_http",
    group_path=True,
    exclude=["^/metrics$"],
    scopes={ScopeType.HTTP},
)


@get("/metrics", tags=["ops"], summary="Prometheus metrics", media_type="text/plain", sync_to_thread=False)
def metrics(rt: Runtime) -> Response[bytes]:
    body = generate_latest(rt.metrics_registry) + generate_latest(REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
