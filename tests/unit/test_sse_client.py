"""The SSE parser ``runwatch run`` reads with (``api.sse_client``), line by line as the standard says;
and ``runwatch run`` resuming a stream the server cut."""

from __future__ import annotations

import asyncio
import os
import sys

from runwatch.agents.offline.model import scenario_text
from runwatch.api.cli.sse_client import SSEMessage, parse
from tests.harness.sse_probe import metric
from tests.harness.waiting import eventually


def test_comment_lines_alone_make_no_event():
    assert list(parse([": heartbeat", "", ": heartbeat", ":", ""])) == []


def test_an_empty_data_line_is_an_event_with_empty_data():
    # What every EventSource delivered for the old heartbeat: the follower must skip it.
    assert list(parse([": heartbeat", "data:", ""])) == [SSEMessage("")]


def test_data_lines_of_one_event_are_joined_with_newlines_and_lose_one_leading_space():
    lines = ["id: 7", "event: note", "data:  two spaces", "data:second", "retry: 10", "nonsense", ""]
    assert list(parse(lines)) == [SSEMessage(" two spaces\nsecond", "7", "note")]


def test_the_last_id_carries_over_and_an_event_the_stream_ends_in_is_dropped():
    events = list(parse(["id: 1", "data: a", "", "data: b", "", "id: 3", "data: c"]))
    assert events == [SSEMessage("a", "1"), SSEMessage("b", "1")]


#: About 12 MB of answer: more than the CLI's pipe and both sockets' buffers hold.
HUGE = {"tokens": 12_000, "token_chars": 1_000, "rate": 0}


async def test_runwatch_run_resumes_where_it_was_when_the_server_cuts_its_stream(make_server):
    """``runwatch run … | less`` left on one screen: the CLI stops reading, the server drops its
    stream after the send timeout, and once read again it resumes from its last event."""
    srv = make_server({"RUNWATCH_WS_SEND_TIMEOUT": "1", "RUNWATCH_MAX_OUTPUT_BYTES": str(32 * 2**20)})
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWATCH_")}
    cli = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "runwatch.api.cli", "run", "demo", str(HUGE).replace("'", '"')),
        *("--url", srv.url, "--token", srv.token or ""),
        env=env,
        stdout=asyncio.subprocess.PIPE,  # not read until the server has cut the stream
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def cut() -> bool:
            return await metric(srv, "runwatch_ws_slow_consumers_total", action="disconnect", transport="sse") == 1

        await eventually(cut, timeout=60)
        out, err = await asyncio.wait_for(cli.communicate(), 90)
    finally:
        if cli.returncode is None:
            cli.kill()
    assert cli.returncode == 0, err.decode()[-2000:]
    assert "Traceback" not in err.decode() and "[succeeded]" in err.decode()
    assert out.decode() == "".join(scenario_text(12_000, 1_000)) + "\n"
    ended = sorted(line["ended"] for line in srv.log_lines() if line.get("event") == "sse.closed")
    assert ended == ["finished", "slow_consumer"]  # the cut stream, then the resumed one
