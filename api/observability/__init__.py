"""Observability: Prometheus metrics (a bus sink, counters, gauges read at scrape time), the
collectors they need, and ``GET /metrics``.

May import: ``runwatch.agents``' vocabulary and contracts. Never a transport (``rest``, ``ws``, ``sse``)."""
