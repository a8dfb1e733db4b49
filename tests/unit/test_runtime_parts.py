"""Small parts of the runtime: token coalescing, tool schemas and arguments, config precedence."""

from __future__ import annotations

import asyncio

import pytest

from runwatch.agents import Agent, Tool, ToolContext, ToolError
from runwatch.agents.loop.coalesce import TokenCoalescer, WindowClock
from runwatch.agents.offline.demo import calculator, file_tools
from runwatch.api.settings.config import ConfigError, load_settings


async def test_coalescer_merges_deltas_within_the_window_and_keeps_order():
    out: list[str] = []

    async def emit(token):
        out.append(token.text)
        counts.append(token.deltas)

    counts: list[int] = []
    c = TokenCoalescer("r", emit, window=0.05)
    for part in ("a", "b", "c"):
        await c.add(part)
    await asyncio.sleep(0.1)  # let the window elapse: the timer is the behaviour under test
    await c.add("d")
    await c.flush()
    assert out == ["abc", "d"] and counts == [3, 1] and c.deltas == 4 and c.events == 2


async def test_coalescer_publishes_early_once_the_text_reaches_max_chars():
    out: list[str] = []
    counts: list[int] = []

    async def emit(token):
        out.append(token.text)
        counts.append(token.deltas)

    c = TokenCoalescer("r", emit, window=60, max_chars=10)
    for part in ("abcd", "efgh", "ijkl", "mn"):
        await c.add(part)
    assert out == ["abcdefghij"]  # published at once, not after the 60 s window, and no longer than 10
    await c.flush()
    assert out == ["abcdefghij", "klmn"] and counts == [3, 1] and c.events == 2 and c.deltas == 4


async def test_coalescer_with_window_zero_publishes_every_delta():
    out: list[str] = []

    async def emit(token):
        out.append(token.text)

    c = TokenCoalescer("r", emit, window=0)
    for part in "xyz":
        await c.add(part)
    await c.flush()
    assert out == ["x", "y", "z"]


async def test_coalescers_of_many_runs_share_one_clock_task():
    out: list[tuple[str, str]] = []
    both = asyncio.Event()

    async def emit(token):
        out.append((token.run_id, token.text))
        if len(out) == 2:
            both.set()

    clock = WindowClock(0.02)
    a, b = (TokenCoalescer(run, emit, 0.02, clock=clock) for run in ("a", "b"))
    await a.add("x")
    await b.add("y")
    await a.add("z")
    clocks = [t for t in asyncio.all_tasks() if t.get_name() == "token-window-clock"]
    assert len(clocks) == 1  # not a timer task per window
    await asyncio.wait_for(both.wait(), 5)
    assert sorted(out) == [("a", "xz"), ("b", "y")]
    await asyncio.wait_for(clocks[0], 5)  # the queue is empty: the clock's task ends


async def test_flush_waits_for_a_window_the_clock_is_publishing():
    """A run's next event must not overtake tokens the clock is still publishing."""
    out: list[str] = []
    release = asyncio.Event()
    publishing = asyncio.Event()

    async def emit(token):
        publishing.set()
        await release.wait()  # a publish held back (by backpressure, say)
        out.append(token.text)

    c = TokenCoalescer("r", emit, 0.01)
    await c.add("held")
    await asyncio.wait_for(publishing.wait(), 5)
    flushing = asyncio.create_task(c.flush())
    await asyncio.sleep(0.05)  # time for the flush to end if it did not wait: what must NOT happen
    assert not flushing.done()
    release.set()
    await asyncio.wait_for(flushing, 5)
    assert out == ["held"]


async def test_a_publish_that_fails_when_a_window_closes_fails_the_next_add():
    failed = asyncio.Event()

    async def emit(token):
        failed.set()
        raise RuntimeError("the bus is closed")

    c = TokenCoalescer("r", emit, 0.01)
    await c.add("lost")
    await asyncio.wait_for(failed.wait(), 5)
    await asyncio.sleep(0)  # the clock records the failure after emit raises
    with pytest.raises(RuntimeError, match="the bus is closed"):
        await c.add("next")


def test_tool_schema_comes_from_hints_and_docstring():
    def lookup(city: str, days: int = 3, ctx: ToolContext | None = None) -> str:
        """Find the weather.

        More detail that the model does not need.
        """
        return city

    spec = Tool(lookup).spec()["function"]
    assert spec["name"] == "lookup" and spec["description"] == "Find the weather."
    assert spec["parameters"]["required"] == ["city"]
    assert spec["parameters"]["properties"]["days"] == {"type": "integer", "default": 3}


def test_tool_arguments_are_validated_with_a_clear_error():
    tool = Tool(calculator)
    assert tool.decode_arguments('{"expression": "1+1"}') == {"expression": "1+1"}
    with pytest.raises(ToolError, match="invalid arguments for calculator"):
        tool.decode_arguments('{"expression": 5}')
    with pytest.raises(ToolError, match="invalid arguments"):
        tool.decode_arguments('{"expr": "1"}')


def test_calculator_refuses_anything_but_arithmetic():
    assert calculator("(2 + 3) * 4") == 20
    for bad in ("__import__('os')", "2 ** 5000", "1/0"):
        with pytest.raises(ToolError):
            calculator(bad)


def test_file_tools_never_leave_their_folder(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    list_files, read_file = file_tools(tmp_path)
    assert read_file.fn("a.txt") == "hello"
    with pytest.raises(ToolError, match="outside"):
        read_file.fn("../../etc/passwd")
    with pytest.raises(ToolError, match="outside"):
        list_files.fn("/")


def test_agent_names_and_tools_are_checked():
    with pytest.raises(ValueError, match="name"):
        Agent(name="no spaces", instructions="")
    with pytest.raises(ValueError, match="two tools"):
        Agent(name="twice", instructions="", tools=[calculator, calculator])


def test_settings_precedence_is_file_then_env_then_flags(tmp_path):
    config = tmp_path / "runwatch.toml"
    config.write_text('port = 9000\nmax_running = 3\nopenai_api_key = "sk-from-file"\n')
    env = {"RUNWATCH_MAX_RUNNING": "4"}
    settings = load_settings({"port": 9100}, config_file=config, environ=env)
    assert (settings.server.port, settings.runs.max_running, settings.model.openai_api_key) == (9100, 4, "sk-from-file")
    assert not settings.model.offline and "sk-from-file" not in repr(settings)


def test_offline_when_no_endpoint_and_no_key():
    settings = load_settings(environ={})
    assert settings.model.offline and settings.model.default == "runwatch-offline"
    assert settings.model_base_url == "http://127.0.0.1:8000/v1"
    pointed = load_settings(environ={"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"})
    assert not pointed.model.offline and pointed.model_base_url == "http://127.0.0.1:11434/v1"


def test_unknown_config_keys_are_refused(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="unknown settings prot"):
        load_settings(config_file=config, environ={})


def test_the_model_transport_is_aiohttp_unless_httpx_is_asked_for_or_the_url_has_credentials():
    from runwatch.api.model_client import _use_aiohttp

    assert _use_aiohttp(load_settings(environ={}))
    assert not _use_aiohttp(load_settings(environ={"RUNWATCH_MODEL_TRANSPORT": "httpx"}))
    assert not _use_aiohttp(load_settings(environ={"OPENAI_BASE_URL": "http://u:p@127.0.0.1:1/v1"}))
    with pytest.raises(ConfigError, match="model_transport must be aiohttp or httpx"):
        load_settings(environ={"RUNWATCH_MODEL_TRANSPORT": "curl"})
