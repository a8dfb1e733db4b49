"""``watch_graph``: run a compiled LangGraph graph as one runwatch run, with people in the loop.

::

    async for chunk in watch_graph(agent, {"messages": [("user", question)]}, rw=rw):
        ...  # the graph's own astream chunks, unchanged

One ``rw.run(..., capabilities=("cancel", "approve", "message"))`` spans everything: the graph's
``astream`` (its config's callbacks gain a :class:`RunwatchCallbackHandler`, so models, tokens and
tools are reported), each pause, and each resume.

**Tokens stream.** LangChain models stream only when something asks: ``watch_graph`` streams with
``"messages"`` among the stream modes (what makes LangGraph stream every model call) and yields
only the modes you asked for, in the shape you asked for them.

**Interrupts** (LangGraph's ``interrupt``, ``HumanInTheLoopMiddleware``): when ``astream`` ends with
the graph paused, each interrupt is asked of people as runwatch approvals (``approvals.py``) and the
graph resumes with ``Command(resume=...)`` — in the same run, as often as it pauses. Resuming needs
a checkpointer (compile the graph with one) and a ``thread_id``: if the config has none, one is made
(a uuid) for this run.

**Cancel** (dashboard or REST): the client's thread hands it to the loop, which cancels the task
iterating ``watch_graph`` while it is inside the graph (the model call in progress, a tool, a wait
for a person) — or, if the caller holds a chunk, as soon as it asks for the next. The run ends
``cancelled`` (within a second of the cancel reaching the client) and the iteration raises
:class:`runwatch.client.Cancelled`. A caller that stops iterating early (``break``, ``aclose()``)
ends the run ``cancelled`` too, once the iterator is closed or collected.

**Messages** go to the graph at its next model call, through :class:`RunwatchMessages` (for
``create_agent``; an ``interrupt`` one cuts the model call streaming) or :func:`steering_messages`
(``messages.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from runwatch.client.link import Cancelled
from runwatch.client.optional import framework

framework("langgraph.pregel", "langchain", has="Pregel")

from langchain_core.callbacks import BaseCallbackManager  # noqa: E402
from langgraph.types import Command  # noqa: E402

from runwatch.client.langchain import approvals  # noqa: E402
from runwatch.client.langchain.callbacks import RunwatchCallbackHandler  # noqa: E402
from runwatch.client.run import AsyncRun  # noqa: E402
from runwatch.client.runwatch import AsyncRunwatch  # noqa: E402

CAPABILITIES = ("cancel", "approve", "message")


def watch_graph(
    graph: Any,
    input: Any,
    config: dict[str, Any] | None = None,
    *,
    rw: AsyncRunwatch,
    agent: str = "langgraph",
    stream_mode: str | Sequence[str] | None = None,
    run_input: str | None = None,
    **run_fields: Any,
) -> WatchedGraph:
    """Run ``graph`` (compiled) on ``input`` as one runwatch run; iterate the result for
    ``graph.astream``'s chunks (``stream_mode`` as ``astream`` takes it; ``subgraphs`` and
    ``version`` go to ``astream`` too). ``run_input``: the run's input as runwatch shows it (by
    default the last message's text, or the input's); ``run_fields``: ``rw.run``'s (``thread``,
    ``model``, ``external_id`` …)."""
    stream_options = {k: run_fields.pop(k) for k in ("subgraphs", "version") if k in run_fields}
    return WatchedGraph(graph, input, config, rw, agent, stream_mode, run_input, run_fields, stream_options)


class WatchedGraph:
    """An async iterator of the graph's chunks; ``run``: the runwatch run, once it has begun."""

    def __init__(
        self,
        graph: Any,
        input: Any,
        config: dict[str, Any] | None,
        rw: AsyncRunwatch,
        agent: str,
        stream_mode: str | Sequence[str] | None,
        run_input: str | None,
        run_fields: dict[str, Any],
        stream_options: dict[str, Any],
    ) -> None:
        self._graph, self._input, self._config, self._rw = graph, input, config, rw
        self._agent, self._run_input, self._run_fields = agent, run_input, run_fields
        self._shape = _Shape(stream_mode if stream_mode is not None else graph.stream_mode, stream_options)
        self._chunks = self._iterate()
        #: The runwatch run (``None`` until the iteration has begun).
        self.run: AsyncRun | None = None
        self._task: asyncio.Task[Any] | None = None
        self._yielding = False
        self._live = False
        self._cancel_fired = False
        self._begun = asyncio.Event()

    async def started(self) -> AsyncRun:
        """The runwatch run, once it is registered (someone must be iterating the graph); raises
        ``RuntimeError`` if the iteration ended before it began."""
        await self._begun.wait()
        if self.run is None:
            raise RuntimeError("the graph's run never began")
        return self.run

    def __aiter__(self) -> WatchedGraph:
        return self

    async def __anext__(self) -> Any:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        await self._chunks.aclose()

    async def __aenter__(self) -> WatchedGraph:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _cancel(self) -> None:
        """(On the loop.) A person cancelled: stop the graph where it is (see the module's docstring)."""
        if self._live and not self._yielding and self._task is not None and not self._cancel_fired:
            self._cancel_fired = True
            self._task.cancel()

    async def _iterate(self) -> AsyncGenerator[Any, None]:
        loop = asyncio.get_running_loop()
        config = _with_thread(dict(self._config or {}))
        text = self._run_input if self._run_input is not None else _describe(self._input)
        closed = False
        try:
            async with self._rw.run(self._agent, text, capabilities=CAPABILITIES, **self._run_fields) as run:
                self.run = run
                self._begun.set()
                handler = RunwatchCallbackHandler(run)
                config["callbacks"] = _with_handler(config.get("callbacks"), handler)
                fire = lambda: loop.call_soon_threadsafe(self._cancel)  # noqa: E731
                self._task, self._live = asyncio.current_task(), True
                run.on_cancel(fire)
                try:
                    payload = self._input
                    while True:
                        async with contextlib.aclosing(
                            self._graph.astream(payload, config, **self._shape.options)
                        ) as stream:
                            async for chunk in stream:
                                out = self._shape.wanted(chunk)
                                if out is _SKIP:
                                    continue
                                self._yielding = True
                                try:
                                    yield out
                                finally:
                                    self._yielding = False
                                    self._task = asyncio.current_task() or self._task
                                run.raise_if_cancelled()
                        run.raise_if_cancelled()
                        snapshot = await _paused(self._graph, config)
                        if snapshot is None:
                            break
                        payload = Command(resume=await approvals.answers(run, snapshot))
                except (asyncio.CancelledError, Cancelled) as e:
                    if isinstance(e, asyncio.CancelledError):
                        if not self._cancel_fired:
                            raise
                        self._uncancel()
                    handler.end_open("cancelled")
                    raise Cancelled from None
                except GeneratorExit:
                    closed = True
                    handler.end_open("cancelled")
                    raise Cancelled from None
                finally:
                    self._live = False
                    run.off_cancel(fire)
        finally:
            self._begun.set()  # (a registration that failed: ``started()`` says so)
        if run.cancelled.is_set() and not closed:
            raise Cancelled

    def _uncancel(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()


_SKIP = object()


class _Shape:
    """The stream modes asked for, and how to give back ``astream``'s chunks in their shape while
    streaming ``"messages"`` too (so the models stream their tokens)."""

    def __init__(self, stream_mode: str | Sequence[str], options: dict[str, Any]) -> None:
        self.single = isinstance(stream_mode, str)
        self.modes = (stream_mode,) if isinstance(stream_mode, str) else tuple(stream_mode)
        self.subgraphs = bool(options.get("subgraphs"))
        self.v2 = options.get("version") == "v2"
        extra = () if "messages" in self.modes else ("messages",)
        self.options = {**options, "stream_mode": [*self.modes, *extra]}

    def wanted(self, chunk: Any) -> Any:
        """The chunk as the caller's ``stream_mode`` would have it, or ``_SKIP``."""
        if self.v2:
            return chunk if chunk.get("type") in self.modes else _SKIP
        if self.subgraphs:
            ns, mode, payload = chunk
            if mode not in self.modes:
                return _SKIP
            return (ns, payload) if self.single else (ns, mode, payload)
        mode, payload = chunk
        if mode not in self.modes:
            return _SKIP
        return payload if self.single else (mode, payload)


async def _paused(graph: Any, config: dict[str, Any]) -> Any:
    """The graph's state if it is paused on interrupts waiting for an answer; else ``None``."""
    try:
        snapshot = await graph.aget_state(config)
    except ValueError:  # no checkpointer: it cannot pause
        return None
    return snapshot if snapshot.interrupts else None


def _with_thread(config: dict[str, Any]) -> dict[str, Any]:
    configurable = dict(config.get("configurable") or {})
    configurable.setdefault("thread_id", str(uuid.uuid4()))
    return {**config, "configurable": configurable}


def _with_handler(callbacks: Any, handler: RunwatchCallbackHandler) -> Any:
    """The config's callbacks (a list, a manager, or none) with ``handler`` added."""
    if isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()
        manager.add_handler(handler, inherit=True)
        return manager
    return [*(callbacks or ()), handler]


def _describe(input: Any) -> str:
    """The run's input as runwatch shows it: the last message's text, or the input's."""
    if isinstance(input, dict) and isinstance(input.get("messages"), list) and input["messages"]:
        last = input["messages"][-1]
        if isinstance(last, tuple | list) and len(last) == 2:
            return str(last[1])
        if isinstance(last, dict):
            return str(last.get("content", ""))
        return str(getattr(last, "content", last))
    return str(input)
