"""/metrics: names and label sets are pinned here, so a rename breaks a test rather than a dashboard."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.harness.watcher import text_of

#: family name → its label names (besides le / quantile). Types in the comment column of docs/operations.md.
EXPECTED = {
    "runwatch_ws_connections": set(),
    "runwatch_sse_streams": set(),
    "runwatch_ws_send_backlog_events": set(),
    "runwatch_ws_send_backlog_max_events": set(),
    "runwatch_offline_model_streams": set(),
    "runwatch_ws_connections_opened": set(),
    "runwatch_ws_connections_closed": {"reason"},
    "runwatch_ws_frames_sent": set(),
    "runwatch_ws_sent_bytes": set(),
    "runwatch_ws_events_sent": set(),
    "runwatch_ws_messages_received": {"type"},
    "runwatch_ws_slow_consumers": {"action", "transport"},
    "runwatch_rate_limited": {"kind"},
    "runwatch_auth_failures": {"reason"},
    "runwatch_sse_streams_opened": set(),
    "runwatch_runs_active": {"agent"},
    "runwatch_runs_queued": {"agent"},
    "runwatch_runs_waiting": set(),
    "runwatch_ingest_runs": set(),
    "runwatch_ingest_long_polls": set(),
    "runwatch_approvals_resolved": {"decision"},
    "runwatch_messages_received": {"mode"},
    "runwatch_runs_finished": {"agent", "status"},
    "runwatch_run_duration_seconds": {"agent"},
    "runwatch_run_queue_wait_seconds": {"agent"},
    "runwatch_llm_tokens": {"model", "type"},
    "runwatch_llm_cost_usd": {"model"},
    "runwatch_llm_time_to_first_token_seconds": {"model"},
    "runwatch_llm_output_tokens_per_second": {"model"},
    "runwatch_llm_request_duration_seconds": {"model"},
    "runwatch_llm_request_errors": {"model", "error_type"},
    "runwatch_tool_calls": {"tool", "outcome"},
    "runwatch_tool_duration_seconds": {"tool"},
    "runwatch_bus_events_published": {"type"},
    "runwatch_bus_publish_to_send_seconds": set(),
    "runwatch_http_requests": {"app_name", "method", "path", "status_code"},
    "runwatch_http_request_duration_seconds": {"app_name", "method", "path", "status_code"},
}


async def _families(server) -> dict:
    async with server.client() as c:
        r = await c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


async def test_metric_names_and_label_sets_are_stable(server):
    await server.start_run("what is 1+1?")  # so the HTTP middleware has counted something
    families = await _families(server)
    ours = {name: f for name, f in families.items() if name.startswith("runwatch_")}
    missing = set(EXPECTED) - set(ours)
    assert not missing, f"metrics gone: {missing}"
    for name, labels in EXPECTED.items():
        found = {k for s in ours[name].samples for k in s.labels} - {"le", "quantile"}
        assert ours[name].samples and found == labels, f"{name}: {found} != {labels}"
    assert set(ours) <= set(EXPECTED) | {"runwatch_http_requests_in_progress", "runwatch_http_requests_error"}


def _documented_metrics() -> dict[str, tuple[str, set[str]]]:
    """The metrics table of docs/operations.md: exposed name → (type, label names)."""
    section = (ROOT / "docs" / "operations.md").read_text().split("\n## Metrics", 1)[1]
    rows = [line for line in section.split("\n\n", 3)[2].splitlines() if line.startswith("| `runwatch_")]
    table: dict[str, tuple[str, set[str]]] = {}
    for row in rows:
        names, kinds, labels, _ = (cell.strip() for cell in row.strip("|").split("|"))
        kinds_each = [k.strip() for k in kinds.split(",")]
        for i, name in enumerate(re.findall(r"`(runwatch_\w+)`", names)):
            table[name] = (kinds_each[min(i, len(kinds_each) - 1)], set(re.findall(r"`(\w+)`", labels)))
    return table


async def test_the_docs_metrics_table_names_every_metric_served_with_its_type_and_labels(server):
    await server.start_run("what is 1+1?")
    families = await _families(server)
    served = {
        f.name + ("_total" if f.type == "counter" else ""): (
            f.type,
            {k for sample in f.samples for k in sample.labels} - {"le", "quantile"},
        )
        for f in families.values()
        if f.name.startswith("runwatch_")
    }
    documented = _documented_metrics()
    assert set(served) - set(documented) == set(), "add these to the metrics table in docs/operations.md"
    assert {name: documented[name] for name in served} == served
    # Litestar counts 5xx answers in runwatch_http_requests_error_total, served once there has been one.
    assert set(documented) - set(served) == {"runwatch_http_requests_error_total"}


async def test_no_label_carries_a_run_id_or_free_text(server):
    w = await server.watcher()
    run = await server.start_run("call nowhere {} what is 3*3 <b>raw</b>?")
    await w.subscribe(run)
    await w.until_finished(run)
    families = await _families(server)
    values = {
        v for f in families.values() if f.name.startswith("runwatch_") for s in f.samples for v in s.labels.values()
    }
    assert run not in values and not any("<b>" in v or " " in v for v in values if not v.startswith("/")), values
    await w.close()


async def test_token_counters_match_the_model_usage_exactly(make_server):
    srv = make_server()
    w = await srv.watcher()
    run = await srv.start_run({"tokens": 777, "rate": 0})
    await w.subscribe(run)
    events = await w.until_finished(run)
    assert text_of(events)
    families = await _families(srv)
    output = next(
        s.value
        for s in families["runwatch_llm_tokens"].samples
        if s.name.endswith("_total") and s.labels["type"] == "output"
    )
    assert output == events[-1]["totals"]["output_tokens"] == 777
    active = sum(s.value for s in families["runwatch_runs_active"].samples)
    queued = sum(s.value for s in families["runwatch_runs_queued"].samples)
    assert (active, queued) == (0, 0)
    finished = {
        s.labels["status"]: s.value for s in families["runwatch_runs_finished"].samples if s.name.endswith("_total")
    }
    assert finished == {"succeeded": 1, "failed": 0, "cancelled": 0}
    await w.close()


def test_the_lock_free_histogram_exposes_what_prometheus_clients_does():
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from runwatch.api.observability.metrics import LockFreeHistogram

    ours, theirs = CollectorRegistry(), CollectorRegistry()
    fast = LockFreeHistogram("x_seconds", "doc", buckets=(0.001, 0.01, 0.1), registry=ours)
    reference = Histogram("x_seconds", "doc", buckets=(0.001, 0.01, 0.1), registry=theirs)
    for value in (0.0, 0.001, 0.0011, 0.01, 0.05, 0.2, 7.0):
        fast.observe(value)
        reference.observe(value)
    assert generate_latest(ours) == generate_latest(theirs)
    assert b'x_seconds_bucket{le="0.001"} 2.0' in generate_latest(ours)


def test_observe_since_counts_the_seconds_up_to_now_and_never_below_zero():
    import time

    from prometheus_client import CollectorRegistry, generate_latest

    from runwatch.api.observability.metrics import LockFreeHistogram

    registry = CollectorRegistry()
    h = LockFreeHistogram("y_seconds", "doc", buckets=(0.001, 10.0), registry=registry)
    h.observe_since(time.time() - 5)
    h.observe_since(time.time() + 60)  # a clock step backwards counts as 0, not as negative
    text = generate_latest(registry).decode()
    assert 'y_seconds_bucket{le="0.001"} 1.0' in text and 'y_seconds_bucket{le="10.0"} 2.0' in text
    assert 5 <= float(text.split("y_seconds_sum ")[1].split()[0]) < 6
