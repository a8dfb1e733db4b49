"""SSE streams: one count per principal with its WebSockets (429 past it), places given back when a
stream ends, and heartbeats that are comment lines only — which ``runwatch run`` reads through."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

import httpx

from runwatch.agents.offline.model import scenario_text
from tests.harness.identity import make_key
from tests.harness.sse_probe import blocks, events_of, metric, read_stream
from tests.harness.waiting import eventually
from tests.harness.watcher import assert_contiguous, text_of

#: A run that stops to wait for a person's approval of a deploy, then answers in 30 tokens.
WAITS = {"approvals": 1, "tokens": 30}


async def _open_streams(stack: contextlib.AsyncExitStack, client: httpx.AsyncClient, run: str, n: int) -> list:
    """``n`` open SSE streams of ``run`` (their responses, headers read)."""
    streams = []
    for _ in range(n):
        r = await stack.enter_async_context(client.stream("GET", f"/api/runs/{run}/stream"))
        assert r.status_code == 200
        streams.append(r)
    return streams


async def _to_the_end(response: httpx.Response) -> list[dict]:
    return events_of(b"".join([chunk async for chunk in response.aiter_bytes()]))


async def _approve_when_asked(client: httpx.AsyncClient, run: str) -> None:
    async def asked() -> bool:
        events = (await client.get(f"/api/runs/{run}/events")).json()["events"]
        return any(e["type"] == "approval.requested" for e in events)

    await eventually(asked, timeout=15)
    events = (await client.get(f"/api/runs/{run}/events")).json()["events"]
    approval = next(e for e in events if e["type"] == "approval.requested")["approval_id"]
    r = await client.post(f"/api/runs/{run}/approvals/{approval}", json={"decision": "approve"})
    assert r.status_code == 200, r.text


async def _heartbeats(client: httpx.AsyncClient, run: str, after: int, count: int) -> None:
    """Return once a stream of ``run`` from ``after`` has carried ``count`` heartbeat comments."""
    seen = 0
    async with client.stream("GET", f"/api/runs/{run}/stream", params={"after": after}) as r:
        async for line in r.aiter_lines():
            seen += line == ": heartbeat"
            if seen >= count:
                return


async def test_the_51st_sse_stream_of_a_principal_is_refused_429_and_the_50_others_go_on(make_server):
    srv = make_server(in_process=True)  # the default: 50 per principal
    run = await srv.start_run(WAITS)
    async with contextlib.AsyncExitStack() as stack:
        c = await stack.enter_async_context(httpx.AsyncClient(base_url=srv.url, headers=srv.auth, timeout=30))
        streams = await _open_streams(stack, c, run, 50)
        refused = await c.get(f"/api/runs/{run}/stream")
        assert refused.status_code == 429, refused.text
        assert refused.json()["code"] == "too_many_connections"
        assert "RUNWATCH_WS_CONNECTIONS_PER_PRINCIPAL" in refused.json()["detail"]
        await _approve_when_asked(c, run)
        results = await asyncio.wait_for(asyncio.gather(*(_to_the_end(r) for r in streams)), 60)
    assert all(events == results[0] for events in results)
    assert_contiguous(results[0])
    assert results[0][-1]["type"] == "run.finished" and results[0][-1]["status"] == "succeeded"
    assert text_of(results[0]).endswith("".join(scenario_text(30)))
    assert await metric(srv, "runwatch_rate_limited_total", kind="sse_streams") == 1


async def _sockets(srv, n: int) -> bool:
    return await metric(srv, "runwatch_ws_connections") == n


async def test_websockets_and_sse_streams_of_a_principal_are_one_count(make_server):
    srv = make_server({"RUNWATCH_WS_CONNECTIONS_PER_PRINCIPAL": "2"}, in_process=True)
    run = await srv.start_run(WAITS)
    viewer = await make_key(srv, "default", "viewer")
    async with contextlib.AsyncExitStack() as stack:
        c = await stack.enter_async_context(srv.client())
        w = await srv.watcher()
        [stream] = await _open_streams(stack, c, run, 1)
        assert (await c.get(f"/api/runs/{run}/stream")).status_code == 429
        extra = await srv.watcher()
        assert (await extra.wait_closed()).code == 1013
        async with srv.client(viewer) as other:  # another principal has a count of its own
            async with other.stream("GET", f"/api/runs/{run}/stream") as r:
                assert r.status_code == 200
        await w.close()
        # (the client's close can complete before the server gives the place back: wait for it)
        await eventually(lambda: _sockets(srv, 0), what="the closed socket's place to come back")
        [again] = await _open_streams(stack, c, run, 1)  # the closed socket's place
        await _approve_when_asked(c, run)
        for r in (stream, again):
            assert (await _to_the_end(r))[-1]["type"] == "run.finished"


async def test_an_sse_stream_gives_its_place_back_when_it_ends_or_its_client_leaves(make_server):
    srv = make_server({"RUNWATCH_WS_CONNECTIONS_PER_PRINCIPAL": "1"}, in_process=True)
    async with srv.client() as c:
        finished = await srv.start_run({"tokens": 5})
        await read_stream(c, finished)  # to run.finished: the stream ends
        waiting = await srv.start_run(WAITS)
        async with c.stream("GET", f"/api/runs/{waiting}/stream") as r:
            assert r.status_code == 200
            assert (await c.get(f"/api/runs/{waiting}/stream")).status_code == 429
        # The client left mid-stream: its place comes back once the server has seen it go.

        async def free() -> bool:
            async with c.stream("GET", f"/api/runs/{finished}/stream") as r:
                await r.aread()
                return r.status_code == 200

        await eventually(free, timeout=10)
        await _approve_when_asked(c, waiting)


async def test_a_quiet_sse_stream_carries_comment_lines_only(make_server):
    srv = make_server({"RUNWATCH_HEARTBEAT": "0.2"}, in_process=True)
    run = await srv.start_run({"tokens": 5, "ttft": 1.5})  # 1.5 s of silence before the first token
    async with srv.client() as c:
        body = await read_stream(c, run)
    heartbeats = [block for block in blocks(body) if any(line.startswith(":") for line in block)]
    assert len(heartbeats) >= 3, body
    assert all(block == [": heartbeat"] for block in heartbeats), heartbeats
    assert not [line for block in blocks(body) for line in block if line.startswith("data:") and not line[5:].strip()]
    events = events_of(body)
    assert_contiguous(events)
    assert text_of(events) == "".join(scenario_text(5))


async def test_runwatch_run_waits_through_a_quiet_approval_and_finishes(make_server):
    """The README's ``runwatch run demo "deploy 2.4.1 to production"``, approved after heartbeats."""
    srv = make_server({"RUNWATCH_HEARTBEAT": "0.2"}, in_process=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWATCH_")}
    cli = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "runwatch.api.cli", "run", "demo", "deploy 2.4.1 to production"),
        *("--url", srv.url, "--token", srv.token or ""),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        first = (await asyncio.wait_for(cli.stderr.readline(), 30)).decode()
        run = first.split()[1]
        async with srv.client() as c:
            await _approve_when_asked_after_heartbeats(c, run)
        out, err = await asyncio.wait_for(cli.communicate(), 30)
    finally:
        if cli.returncode is None:
            cli.kill()
    stderr = first + err.decode()
    assert cli.returncode == 0, stderr
    assert "Traceback" not in stderr and "waits for approval" in stderr and "[succeeded]" in stderr, stderr
    assert "2.4.1" in out.decode()


async def _approve_when_asked_after_heartbeats(c: httpx.AsyncClient, run: str) -> None:
    """Once the run waits for its approval, let a stream of it go quiet for 3 heartbeats (as the
    CLI's does, from the same moment), then approve."""

    async def asked() -> int:
        events = (await c.get(f"/api/runs/{run}/events")).json()["events"]
        return next((e["seq"] for e in events if e["type"] == "approval.requested"), 0)

    await eventually(asked, timeout=15)
    await asyncio.wait_for(_heartbeats(c, run, await asked(), 3), 15)
    await _approve_when_asked(c, run)
