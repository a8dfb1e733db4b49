"""Prometheus collectors of this process's own making: a lock-free histogram for the hottest path,
and gauges read off live state when Prometheus scrapes (no bookkeeping between scrapes)."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from runwatch.agents.ingest import IngestService
    from runwatch.agents.runs.supervising import Supervising
    from runwatch.api.offline.serving import OfflineServing
    from runwatch.api.watchers import Watchers


class LockFreeHistogram(Collector):
    """A histogram observed only on the event loop's thread: one bisect and two additions, no lock.

    prometheus_client's ``Histogram`` takes a lock for the bucket and another for the sum on every
    observation; this one is observed for every frame sent to every watcher, the hottest path there is.
    """

    def __init__(self, name: str, documentation: str, *, buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = [float(b) for b in buckets]
        self._counts = [0] * (len(self._bounds) + 1)  # the last one is +Inf
        self._sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value

    def observe_since(self, start: float) -> None:
        """Observe the seconds from ``start`` (a ``time.time()``) to now; never less than 0."""
        value = time.time() - start
        if value < 0.0:
            value = 0.0
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value

    def collect(self) -> Iterator[HistogramMetricFamily]:
        cumulative = 0
        buckets = []
        for bound, count in zip([*self._bounds, float("inf")], self._counts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))
        yield HistogramMetricFamily(self._name, self._documentation, buckets=buckets, sum_value=self._sum)


class LiveGauges(Collector):
    """Gauges read off live state when Prometheus scrapes: no bookkeeping on the hot path."""

    def __init__(
        self, watchers: Watchers, offline: OfflineServing, supervisor: Supervising, ingest: IngestService
    ) -> None:
        self._watchers = watchers
        self._offline = offline
        self._supervisor = supervisor
        self._ingest = ingest

    def collect(self) -> Iterator[GaugeMetricFamily]:
        watchers = self._watchers
        yield GaugeMetricFamily("runwatch_ws_connections", "WebSocket connections open now.", len(watchers.connections))
        yield GaugeMetricFamily("runwatch_sse_streams", "SSE streams open now.", len(watchers.sse_streams))
        backlog = [c.backlog() for c in list(watchers.connections)]
        yield GaugeMetricFamily(
            "runwatch_ws_send_backlog_events",
            "Events owed to all WebSocket watchers now (send-queue depth).",
            sum(backlog),
        )
        yield GaugeMetricFamily(
            "runwatch_ws_send_backlog_max_events",
            "Events owed to the most-behind WebSocket watcher now.",
            max(backlog, default=0),
        )
        yield GaugeMetricFamily(
            "runwatch_offline_model_streams", "Offline model responses being streamed now.", self._offline.streams
        )
        yield GaugeMetricFamily(
            "runwatch_runs_waiting",
            "Runs executing here that wait for a person's approval now.",
            self._supervisor.waiting,
        )
        yield GaugeMetricFamily(
            "runwatch_ingest_runs", "External runs live that this instance holds now.", len(self._ingest.runs.live)
        )
        yield GaugeMetricFamily(
            "runwatch_ingest_long_polls", "Agents' long polls for controls waiting here now.", self._ingest.long_polls
        )
