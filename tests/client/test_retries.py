"""A server killed (kill -9) and restarted mid-run: the client retries what it got no answer for,
with the same ``n``, and the stored run is exactly what the agent reported — no gap, no duplicate."""

from __future__ import annotations

import signal

from runwatch.client import Runwatch
from tests.conftest import Server
from tests.harness.identity import make_key
from tests.harness.watcher import assert_contiguous, text_of
from tests.server.ingest.agent import stored


async def test_batches_retried_across_a_kill_and_restart_are_stored_exactly_once(make_server, tmp_path):
    srv = make_server(data_dir=tmp_path / "data")
    rw = Runwatch(srv.url, await make_key(srv, "acme", "agent", "sdk-bot"))
    before, during = [f"a{i} " for i in range(200)], [f"b{i} " for i in range(200)]
    again: Server | None = None
    try:
        with rw.run(agent="their-agent", input="survive a restart", external_id="nightly") as run:
            run.step("m1")
            for word in before:
                run.token(word)
            run.flush()
            srv.stop(signal.SIGKILL)
            for word in during:  # posted into the void: retried until the server is back
                run.token(word)
            run.step_done({"input_tokens": 4, "output_tokens": 400}, "stop")
            again = Server(tmp_path / "data", port=srv.port).start()  # the same data, the same address
        rw.close()
        kept = await stored(again, run.id)
    finally:
        rw.close()
        if again is not None:
            again.stop()
    assert_contiguous(kept)
    assert text_of(kept) == "".join(before + during)
    assert [e["type"] for e in kept if e["type"] != "token"][-3:] == ["step.started", "step.finished", "run.finished"]
    assert kept[-1]["status"] == "succeeded"
    assert rw.errors  # the posts that met no server, each retried
