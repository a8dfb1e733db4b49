"""A server killed (kill -9) mid-run: the agent retries what it got no answer for, and the stored
run is exactly what the agent sent — no gap, no duplicate."""

from __future__ import annotations

import signal
import socket

import msgspec

from tests.harness.watcher import assert_contiguous
from tests.server.ingest.agent import Agent, assert_stored_as_sent, numbered, step, stored


def _send_and_vanish(url: str, key: str, path: str, body: dict) -> None:
    """Send a whole request and read nothing: the client never learns whether it was applied."""
    payload = msgspec.json.encode(body)
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port))) as s:
        s.sendall(head + payload)


async def test_a_batch_whose_answer_was_lost_in_a_kill_is_stored_once(make_server, tmp_path, store_env):
    srv = make_server(store_env, data_dir=tmp_path / "data")
    agent = await Agent.of(srv, "acme")
    run = await agent.run(external_id="nightly")
    events = numbered([*step(0, "a", "b", "c"), *step(1, "d", "e"), {"type": "run.finished", "status": "succeeded"}])
    first, second, third = events[:3], events[3:7], events[7:]
    assert (await agent.post(run, first)).status_code == 200
    assert (await agent.post(run, second)).status_code == 200  # stored: but say its answer never came
    srv.stop(signal.SIGKILL)

    again = make_server(store_env, data_dir=tmp_path / "data")
    await agent.at(again)
    found = await agent.register(external_id="nightly")
    assert found.status_code == 200 and found.json()["last_n"] == len(first) + len(second), found.text
    retried = await agent.post(run, second)
    assert (retried.json()["accepted"], retried.json()["skipped"]) == (0, len(second))
    assert (await agent.post(run, third)).json()["status"] == "succeeded"
    await agent.close()
    kept = await stored(again, run)
    assert_contiguous(kept)
    assert_stored_as_sent(kept, events)


async def test_a_batch_in_flight_when_the_server_died_is_stored_once_when_retried(make_server, tmp_path, store_env):
    srv = make_server(store_env, data_dir=tmp_path / "data")
    agent = await Agent.of(srv, "acme")
    run = await agent.run(external_id="in-flight")
    events = numbered([*step(0, *(f"t{i} " for i in range(400))), {"type": "run.finished", "status": "succeeded"}])
    head, tail = events[:200], events[200:]
    assert (await agent.post(run, head[:50])).status_code == 200
    _send_and_vanish(srv.url, agent.key, f"/api/ingest/runs/{run}/events", {"events": head})
    srv.stop(signal.SIGKILL)  # none, some or all of it stored: the agent cannot know which

    again = make_server(store_env, data_dir=tmp_path / "data")
    await agent.at(again)
    retried = await agent.post(run, head)
    assert retried.status_code == 200 and retried.json()["last_n"] == len(head), retried.text
    assert (await agent.post(run, tail)).json()["status"] == "succeeded"
    await agent.close()
    kept = await stored(again, run)
    assert_contiguous(kept)
    assert_stored_as_sent(kept, events)
