"""One client, many runs, one batcher: every run's waiting events go in one ``POST
/api/ingest/events``, counted here on the server's own metrics; a run's part the server refuses
leaves the others' stored."""

from __future__ import annotations

import contextlib

from prometheus_client.parser import text_string_to_metric_families

from runwatch.client import AsyncRun, AsyncRunwatch
from tests.conftest import Server
from tests.harness.watcher import assert_contiguous, text_of
from tests.server.ingest.agent import stored

RUNS, ROUNDS = 20, 10


async def batches_posted(server: Server) -> float:
    """How many ``POST /api/ingest/events`` the server has answered (any status), from ``/metrics``."""
    async with server.client() as c:
        text = (await c.get("/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "runwatch_http_requests_total" and sample.labels.get("path") == "/api/ingest/events"
    )


async def test_the_events_of_many_runs_go_in_one_request_per_flush(server: Server, arw: AsyncRunwatch):
    async with contextlib.AsyncExitStack() as stack:
        runs: list[AsyncRun] = [
            await stack.enter_async_context(arw.run(agent="their-agent", input=f"run {i}")) for i in range(RUNS)
        ]
        before = await batches_posted(server)
        for k in range(ROUNDS):
            for run in runs:
                run.token(f"{k} ")
            await arw.flush()
        posted = await batches_posted(server) - before
    for run in runs:
        kept = await stored(server, run.id)
        assert_contiguous(kept)
        assert text_of(kept) == "".join(f"{k} " for k in range(ROUNDS))
    assert posted == ROUNDS  # 200 token events of 20 runs: one request per round, not one per run
    assert not arw.errors


async def test_a_run_s_part_refused_leaves_the_other_runs_parts_of_its_request_stored(server: Server, key: str):
    rw = AsyncRunwatch(server.url, key, linger=5.0)  # (a long window: every part below is in one request)
    try:
        async with rw.run(agent="their-agent", input="fetch") as big, rw.run(agent="their-agent", input="say") as small:
            before = await batches_posted(server)
            with big.tool("call_1", "fetch", {"blob": "y" * 70_000}):  # past 64 KiB: refused
                small.token("kept ")
            await rw.flush()
            posted = await batches_posted(server) - before
            big.token("after")
            small.token("too")
        kept_small, kept_big = await stored(server, small.id), await stored(server, big.id)
    finally:
        await rw.aclose()
    assert posted == 1
    assert text_of(kept_small) == "kept too" and kept_small[-1]["status"] == "succeeded"
    assert text_of(kept_big) == "after" and not any(e["type"].startswith("tool.") for e in kept_big)
    assert_contiguous(kept_small)
    assert_contiguous(kept_big)
    (refused,) = rw.errors
    assert (refused.status, refused.code) == (413, "field_too_large")


async def test_buffered_bytes_counts_what_the_client_holds_until_it_is_stored(server: Server, key: str):
    rw = AsyncRunwatch(server.url, key, linger=5.0)
    try:
        async with rw.run(agent="their-agent", input="hold it") as run:
            run.token("x" * 1000)
            held = rw.buffered_bytes
            await run.flush()
            after = rw.buffered_bytes
    finally:
        await rw.aclose()
    assert held >= 1000 and after == 0
