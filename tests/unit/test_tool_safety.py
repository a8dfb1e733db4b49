"""No tool can freeze the server or break a run: bounded arithmetic, results that cannot be sent,
and file tools that never follow a link out of their folder."""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwatch.agents.events import Totals
from runwatch.agents.loop.agent import Agent
from runwatch.agents.loop.tool_calls import Call, ToolCalls
from runwatch.agents.loop.tools import ToolError
from runwatch.agents.offline.demo import file_tools, wait
from tests.conftest import Server
from tests.harness.watcher import text_of

SECRET = "the-secret-outside-the-files-folder"

MODULE = textwrap.dedent('''
    from runwatch.agents import Agent

    def huge() -> int:
        """A number too long for JSON (Python will not write an int of over 4,300 digits)."""
        return 10**5000

    unsendable = Agent(name="unsendable", instructions="Use your tool.", tools=[huge], max_steps=3)
''')


def _finished_tools(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] == "tool.finished"]


async def test_a_runaway_power_is_a_tool_error_at_once_while_health_stays_fast(server):
    w = await server.watcher()
    run = await server.start_run('call calculator {"expression": "((9**99)**99)**99"}')
    await w.subscribe(run)
    finished = asyncio.create_task(w.until_finished(run, timeout=30))
    latencies: list[float] = []
    async with server.client() as c:
        while not finished.done():
            started = time.monotonic()
            assert (await c.get("/api/health", timeout=5)).status_code == 200
            latencies.append(time.monotonic() - started)
            await asyncio.wait({finished}, timeout=0.05)  # a polling interval, ended early by the run's end
    events = await finished
    await w.close()
    call = _finished_tools(events)[0]
    assert call["tool"] == "calculator" and "too large" in call["error"]
    assert call["duration"] < 0.5
    assert max(latencies) < 1.0, f"/api/health took {max(latencies):.2f} s"
    assert events[-1]["status"] == "succeeded"


@pytest.fixture(scope="module")
def unsendable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("unsendable")
    (folder / "unsendable_agents.py").write_text(MODULE)
    srv = Server(folder / "data", {"RUNWATCH_AGENTS": "unsendable_agents", "PYTHONPATH": str(folder)}).start()
    yield srv
    srv.stop()


async def test_a_result_that_cannot_be_encoded_as_json_is_a_tool_error_the_model_sees(unsendable):
    events = await unsendable.run_to_end("call huge {}", agent="unsendable")
    call = _finished_tools(events)[0]
    assert call["result"] is None and call["error"].startswith("the tool's result cannot be encoded as JSON")
    assert "cannot be encoded as JSON" in text_of(events)  # the offline model quotes what the tool said
    assert events[-1]["status"] == "succeeded" and events[-1]["error"] is None


async def test_every_tool_started_gets_its_tool_finished_when_the_result_cannot_be_encoded(unsendable):
    events = await unsendable.run_to_end("call huge {} call huge {}", agent="unsendable")
    started = [e["call_id"] for e in events if e["type"] == "tool.started"]
    finished = [e["call_id"] for e in _finished_tools(events)]
    assert len(started) == 2 and finished == started


async def test_an_exception_escaping_a_tool_call_is_reported_as_itself_not_as_a_task_group():
    class Leaky(ToolCalls):
        async def _call_tool(self, *args: object) -> str:
            raise RuntimeError("disk on fire")

    async def emit(event: object) -> None:
        pass

    calls = Leaky(emit, max_tool_result_bytes=None)
    agent = Agent(name="leaky", instructions=".", tools=[wait])
    made = [Call("c1", "wait", '{"seconds": 0}'), Call("c2", "wait", '{"seconds": 0}')]  # two at once
    with pytest.raises(RuntimeError, match=r"^disk on fire$"):
        await calls.messages("run-leaky", agent, made, Totals(), None)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """A server whose demo file tools read ``files/``, beside an ``outside/`` folder with a secret."""
    base = tmp_path_factory.mktemp("sandbox")
    files, outside = base / "files", base / "outside"
    files.mkdir()
    outside.mkdir()
    (files / "plain.txt").write_text("a plain file inside")
    for name in ("secret.txt", "hard-secret.txt"):
        (outside / name).write_text(SECRET)
    (files / "link-out.txt").symlink_to(outside / "secret.txt")
    (files / "folder-out").symlink_to(outside, target_is_directory=True)
    os.link(outside / "hard-secret.txt", files / "hard-link.txt")
    srv = Server(base / "data", {"RUNWATCH_FILES_DIR": str(files)}).start()
    yield srv, files
    srv.stop()


async def test_a_symlink_pointing_out_of_the_files_folder_is_refused(sandbox):
    srv, _ = sandbox
    events = await srv.run_to_end('call read_file {"path": "link-out.txt"}')
    call = _finished_tools(events)[0]
    assert call["error"] == "'link-out.txt' is a link; links are not followed"
    assert SECRET not in json.dumps(events)


async def test_a_folder_symlinked_out_of_the_files_folder_is_neither_listed_nor_read(sandbox):
    srv, _ = sandbox
    events = await srv.run_to_end(
        'call list_files {"path": "folder-out"} call read_file {"path": "folder-out/secret.txt"}'
    )
    listed, read = _finished_tools(events)
    assert listed["result"] is None and "link" in listed["error"]
    assert read["result"] is None and "link" in read["error"]
    assert SECRET not in json.dumps(events)


async def test_a_hard_link_to_a_file_outside_is_refused(sandbox):
    srv, _ = sandbox
    events = await srv.run_to_end('call read_file {"path": "hard-link.txt"}')
    call = _finished_tools(events)[0]
    assert call["error"] == "'hard-link.txt' has other hard links; such files are not read"
    assert SECRET not in json.dumps(events)


def test_a_file_swapped_for_a_symlink_while_it_is_read_never_leaks_what_is_outside(tmp_path):
    files, outside = tmp_path / "files", tmp_path / "outside"
    files.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    target = files / "target.txt"
    target.write_text("inside")
    _, read_file = file_tools(files)
    stop = threading.Event()

    def swap() -> None:
        """Put a regular file, then a symlink pointing out, at ``target``: each swap is atomic."""
        while not stop.is_set():
            (files / "file.tmp").write_text("inside")
            os.replace(files / "file.tmp", target)
            (files / "link.tmp").symlink_to(outside / "secret.txt")
            os.replace(files / "link.tmp", target)

    swapper = threading.Thread(target=swap)
    swapper.start()
    outcomes: Counter[str] = Counter()
    try:
        deadline = time.monotonic() + 15
        while min(outcomes["inside"], outcomes["refused"]) < 2000 and time.monotonic() < deadline:
            try:
                outcomes[read_file.fn("target.txt")] += 1
            except ToolError:
                outcomes["refused"] += 1
    finally:
        stop.set()
        swapper.join()
    assert set(outcomes) <= {"inside", "refused"}, f"read something else: {outcomes}"
    assert min(outcomes["inside"], outcomes["refused"]) >= 2000, f"the race was not run: {outcomes}"
