"""``RunwatchProcessor``: every run of the process, streamed or not, in runwatch — one tracing
processor, ``add_trace_processor(RunwatchProcessor(rw))``.

Guarantees:

* The SDK's callbacks only hand the span or trace to a bounded queue (``put_nowait``) and return:
  they never block and never raise. A span that finds the queue full is dropped and counted
  (``dropped``); a trace's end is never dropped (it waits beside the queue, at most one per open
  trace), so a run never stays open because its end found the queue full.
* One thread of the processor's own makes every runwatch call; an error there goes to the client's
  ``errors`` and never reaches the SDK.
* A trace is one runwatch run, registered with ``external_id`` ``openai-agents-<trace_id>`` (seen
  twice, it is still one run), live from the trace's start: a generation or response span is a step
  from its start (usage at its end), a function span a tool call, agent spans, handoffs and
  guardrails are status events. Capabilities: none — a ``Runner.run`` cannot be cancelled
  (openai-agents #1512), so the dashboard offers no button the run could not honour.
* Traces ``run_streamed`` reports itself are skipped (``events.OWNED``).
"""

from __future__ import annotations

import collections
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from runwatch.client.openai_agents import events
from runwatch.client.optional import framework
from runwatch.client.run import Run, ToolCall
from runwatch.client.runwatch import Runwatch

_sdk = framework("agents", "openai-agents", has="Runner")
TracingProcessor = _sdk.TracingProcessor

#: How long ``force_flush`` (and ``shutdown``) wait, by default, for the queue to drain, then for the client.
FLUSH_SECONDS = 10.0

_TRACE_START, _TRACE_END, _SPAN_START, _SPAN_END, _FLUSH, _WAKE, _STOP = range(7)


class SpanFailed(Exception):
    """The error an agent or task span ended with: the run ends ``failed`` with its text."""


@dataclass
class _Trace:
    """A trace as the worker tracks it: its run and what is open in it."""

    run: Run | None
    #: The turn spans open, and whether a generation or response span began in each.
    turns: dict[str, bool] = field(default_factory=dict)
    #: The step index of each model span open (model calls of a trace may overlap).
    steps: dict[str, int] = field(default_factory=dict)
    tools: dict[str, ToolCall] = field(default_factory=dict)
    error: str | None = None


class RunwatchProcessor(TracingProcessor):  # type: ignore[misc,valid-type]
    """Report every trace of the process to runwatch through ``rw`` (a sync :class:`Runwatch`).

    ``agent``: the runwatch agent name of every run (else the trace's workflow name, made one);
    ``queue_events``: the most callbacks waiting for the worker (more are dropped, counted in
    ``dropped``)."""

    def __init__(
        self,
        rw: Runwatch,
        *,
        agent: str | None = None,
        queue_events: int = 10_000,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self._flush_seconds = flush_seconds
        self._rw = rw
        self._agent = events.agent_name(agent) if agent else None
        self._queue: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=queue_events)
        #: Trace ends that found the queue full: taken once the queue is empty.
        self._ends: collections.deque[Any] = collections.deque()
        #: Callbacks dropped because the queue was full.
        self.dropped = 0
        self._traces: dict[str, _Trace] = {}
        self._stopped = False
        self._worker = threading.Thread(target=self._work, name="runwatch-openai-agents", daemon=True)
        self._worker.start()

    @property
    def waiting(self) -> int:
        """Callbacks in the queue, not yet handled by the worker."""
        return self._queue.qsize() + len(self._ends)

    # -- the SDK's callbacks (any thread): hand over, never block, never raise

    def _offer(self, op: int, item: Any) -> None:
        try:
            self._queue.put_nowait((op, item))
        except queue.Full:
            self.dropped += 1

    def on_trace_start(self, trace: Any) -> None:
        if trace.trace_id not in events.OWNED:
            self._offer(_TRACE_START, trace)

    def on_trace_end(self, trace: Any) -> None:
        if trace.trace_id in events.OWNED:
            return
        try:
            self._queue.put_nowait((_TRACE_END, trace))
        except queue.Full:
            self._ends.append(trace)
            try:  # wake the worker if the queue emptied meanwhile; if full, it is busy and looks anyway
                self._queue.put_nowait((_WAKE, None))
            except queue.Full:
                pass

    def on_span_start(self, span: Any) -> None:
        if span.trace_id not in events.OWNED:
            self._offer(_SPAN_START, span)

    def on_span_end(self, span: Any) -> None:
        if span.trace_id not in events.OWNED:
            self._offer(_SPAN_END, span)

    def force_flush(self) -> None:
        """Wait (up to ``flush_seconds`` each) until the queue is drained, then the client flushed."""
        if self._stopped:
            return
        drained = threading.Event()
        try:
            self._queue.put((_FLUSH, drained), timeout=self._flush_seconds)
            if drained.wait(self._flush_seconds):
                self._rw.flush(self._flush_seconds)
        except Exception as e:  # a full queue, the client's timeout: never into the SDK
            self._report(e)

    def shutdown(self) -> None:
        """Flush (as ``force_flush``), then stop the worker (idempotent)."""
        if self._stopped:
            return
        self.force_flush()
        self._stopped = True
        try:
            self._queue.put((_STOP, None), timeout=self._flush_seconds)
        except queue.Full as e:
            self._report(e)
        self._worker.join(self._flush_seconds)

    # -- the worker

    def _report(self, error: BaseException) -> None:
        self._rw.report(error if isinstance(error, Exception) else RuntimeError(repr(error)))

    def _work(self) -> None:
        while True:
            op, item = self._queue.get()
            try:
                if op == _STOP:
                    return
                if op == _FLUSH:
                    self._take_ends()
                    item.set()
                else:
                    self._handle(op, item)
                if self._ends and self._queue.empty():
                    self._take_ends()
            except Exception as e:
                self._report(e)

    def _take_ends(self) -> None:
        while self._ends:
            self._handle(_TRACE_END, self._ends.popleft())

    def _handle(self, op: int, item: Any) -> None:
        if op == _TRACE_START:
            self._start(item)
        elif op == _TRACE_END:
            self._end(item)
        elif op in (_SPAN_START, _SPAN_END) and (trace := self._traces.get(item.trace_id)) is not None:
            if trace.run is not None:
                (self._span_started if op == _SPAN_START else self._span_ended)(trace, trace.run, item)

    def _start(self, trace: Any) -> None:
        workflow = (getattr(trace, "name", "") or "").strip()
        name = self._agent or events.agent_name(workflow)
        run = self._rw.run(
            agent=name, input=workflow or name, capabilities=(), external_id=f"openai-agents-{trace.trace_id}"
        )
        # Not waiting for the registration (nor, at the end, for the events to be stored): one trace
        # must never hold up the others' spans, whatever the server does (a refusal is in rw.errors).
        self._traces[trace.trace_id] = _Trace(run=run.begin())

    def _end(self, trace: Any) -> None:
        entry = self._traces.pop(trace.trace_id, None)
        if entry is None or entry.run is None:
            return
        for tool in entry.tools.values():
            tool.__exit__(None, None, None)
        error = SpanFailed(entry.error) if entry.error else None
        entry.run.end(error)

    def _span_started(self, trace: _Trace, run: Run, span: Any) -> None:
        data = span.span_data
        kind = data.type
        if kind in ("generation", "response"):
            trace.steps[span.span_id] = run.step(getattr(data, "model", None) or "unknown")
            if span.parent_id in trace.turns:
                trace.turns[span.parent_id] = True
        elif kind == "function":
            trace.tools[span.span_id] = run.tool(span.span_id, data.name, events.arguments(data.input))
        elif kind == "turn":
            trace.turns[span.span_id] = False
        elif kind == "agent":
            run.status(f"agent {data.name}")

    def _span_ended(self, trace: _Trace, run: Run, span: Any) -> None:
        data = span.span_data
        kind = data.type
        error = span.error
        if kind in ("generation", "response"):
            index = trace.steps.pop(span.span_id, None)
            run.step_done(events.usage(data.usage), "error" if error else "stop", index=index)
        elif kind == "function":
            tool = trace.tools.pop(span.span_id, None)
            if tool is not None:
                tool.result(data.output if data.output is None or isinstance(data.output, str) else str(data.output))
                failed = SpanFailed(error.get("message", "error")) if error else None
                tool.__exit__(SpanFailed if failed else None, failed, None)
        elif kind == "turn":
            if not trace.turns.pop(span.span_id, True):  # a model that made no span of its own
                index = run.step("unknown")
                run.step_done(events.usage(data.usage), "error" if error else "stop", index=index)
        elif kind == "handoff":
            run.status(f"handoff {data.from_agent} → {data.to_agent}")
        elif kind == "guardrail":
            run.status(f"guardrail {data.name}: {'triggered' if data.triggered else 'passed'}")
        elif kind in ("agent", "task") and error and trace.error is None:
            message, detail = error.get("message", "error"), error.get("data")
            trace.error = f"{message}: {detail}" if detail else message
