"""Prometheus metrics: a bus sink fed by run events, counters the WebSocket code bumps, and
gauges read off live state at scrape time.

Cardinality is bounded by construction: no run ids, user text or free-form errors in labels.
``agent``, ``model`` and ``tool`` values come from the agent registry (anything else is counted
as ``other``); every other label has a fixed set of values, listed here. Known label sets are
created at start-up, so every series exists (at zero) before the first run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from runwatch.agents.events import (
    EVENT_TYPES,
    ApprovalResolved,
    MessageReceived,
    Published,
    RunFinished,
    RunQueued,
    RunResumed,
    RunStarted,
    StepFinished,
    StepStarted,
    Token,
    ToolFinished,
)
from runwatch.api.observability.collectors import LockFreeHistogram
from runwatch.api.observability.labels import (
    APPROVAL_DECISIONS,
    AUTH_FAILURE_REASONS,
    CLIENT_MESSAGE_TYPES,
    CLOSE_REASONS,
    LIMIT_KINDS,
    LLM_ERROR_TYPES,
    MESSAGE_MODES,
    OTHER,
    RUN_STATUSES,
    SLOW_CONSUMER_TRANSPORTS,
    TOKEN_TYPES,
    TOOL_OUTCOMES,
)

# ``*_created`` series double the series count and no dashboard here reads them.
disable_created_metrics()

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_RATE = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)


class Metrics:
    """All of runwatch's own metrics. Also a bus ``Sink``: ``accept`` sees every event."""

    def __init__(
        self,
        *,
        agents: dict[str, tuple[str, Iterable[str]]],
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        """``agents`` maps each agent name to its model and tool names (the allowed label values)."""
        self._agents = set(agents)
        self._models = {model for model, _ in agents.values()}
        self._tools = {tool for _, tools in agents.values() for tool in tools}
        self._runs: dict[str, tuple[str, str, bool]] = {}  # run_id -> (agent, model, started)
        self._streamed: dict[str, int] = {}  # run_id -> output deltas counted in the current step
        self._connection_metrics(registry)
        self._limit_metrics(registry)
        self._run_metrics(registry)
        self._llm_metrics(registry)
        self._tool_metrics(registry)
        self._bus_metrics(registry)
        self._preset()
        #: What each event type adds to the metrics (the rest are only counted as published).
        self._on: dict[str, Callable[[Any], None]] = {
            "token": self._on_token,
            "step.started": self._on_step_started,
            "step.finished": self._on_step_finished,
            "tool.finished": self._on_tool_finished,
            "approval.resolved": self._on_approval,
            "message.received": self._on_message,
            "run.queued": self._on_run_queued,
            "run.started": self._on_run_started,
            "run.resumed": self._on_run_started,
            "run.finished": self._on_run_finished,
        }

    def _connection_metrics(self, r: CollectorRegistry) -> None:
        """WebSocket and SSE connections: opened, closed, frames, bytes, slow consumers."""
        self.ws_opened = Counter("runwatch_ws_connections_opened", "WebSocket connections accepted.", registry=r)
        self.ws_closed = Counter(
            "runwatch_ws_connections_closed", "WebSocket connections ended, by reason.", ["reason"], registry=r
        )
        self.ws_frames = Counter("runwatch_ws_frames_sent", "WebSocket frames sent.", registry=r)
        self.ws_bytes = Counter("runwatch_ws_sent_bytes", "Payload bytes sent in WebSocket frames.", registry=r)
        self.ws_events = Counter("runwatch_ws_events_sent", "Events sent to WebSocket watchers.", registry=r)
        self.ws_received = Counter(
            "runwatch_ws_messages_received", "Client messages received, by type.", ["type"], registry=r
        )
        self.slow_consumers = Counter(
            "runwatch_ws_slow_consumers",
            "Watchers cut off for being slow, by action and transport (ws, sse).",
            ["action", "transport"],
            registry=r,
        )
        self.sse_opened = Counter("runwatch_sse_streams_opened", "SSE streams opened.", registry=r)

    def _limit_metrics(self, r: CollectorRegistry) -> None:
        """Metrics of identity and limits."""
        self.rate_limited = Counter(
            "runwatch_rate_limited", "Requests and messages refused by a limit, by limit.", ["kind"], registry=r
        )
        self.auth_failures = Counter(
            "runwatch_auth_failures", "Credentials refused (or missing), by reason.", ["reason"], registry=r
        )

    def _run_metrics(self, r: CollectorRegistry) -> None:
        """Runs: active, queued, finished, their duration and queue wait."""
        self.runs_active = Gauge("runwatch_runs_active", "Runs executing now.", ["agent"], registry=r)
        self.runs_queued = Gauge("runwatch_runs_queued", "Runs waiting for a slot.", ["agent"], registry=r)
        self.runs_finished = Counter(
            "runwatch_runs_finished", "Runs ended, by agent and status.", ["agent", "status"], registry=r
        )
        self.run_duration = Histogram(
            "runwatch_run_duration_seconds",
            "Run duration, queue excluded.",
            ["agent"],
            buckets=_SECONDS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "runwatch_run_queue_wait_seconds",
            "Time from queued to started.",
            ["agent"],
            buckets=_SECONDS,
            registry=r,
        )

    def _llm_metrics(self, r: CollectorRegistry) -> None:
        """Metrics of LLM (meanings after the OpenTelemetry GenAI conventions)."""
        self.tokens = Counter(
            "runwatch_llm_tokens", "Tokens by model and type (input, output).", ["model", "type"], registry=r
        )
        self.ttft = Histogram(
            "runwatch_llm_time_to_first_token_seconds",
            "Time to the first streamed token of a model call.",
            ["model"],
            buckets=(*_LATENCY, 5.0, 10.0),
            registry=r,
        )
        self.output_rate = Histogram(
            "runwatch_llm_output_tokens_per_second",
            "Output tokens per second of one model call, after the first.",
            ["model"],
            buckets=_RATE,
            registry=r,
        )
        self.llm_duration = Histogram(
            "runwatch_llm_request_duration_seconds",
            "Duration of one streamed model call.",
            ["model"],
            buckets=_SECONDS,
            registry=r,
        )
        self.llm_errors = Counter(
            "runwatch_llm_request_errors",
            "Failed model calls, by model and error type.",
            ["model", "error_type"],
            registry=r,
        )

    def _tool_metrics(self, r: CollectorRegistry) -> None:
        """Tool calls, cost, approvals and people's messages."""
        self.tool_calls = Counter(
            "runwatch_tool_calls", "Tool calls, by tool and outcome.", ["tool", "outcome"], registry=r
        )
        self.cost = Counter(
            "runwatch_llm_cost_usd",
            "What model calls cost, in USD, by model (priced models only: see RUNWATCH_PRICES).",
            ["model"],
            registry=r,
        )
        self.approvals = Counter(
            "runwatch_approvals_resolved",
            "Tool-call approvals resolved, by decision (approved, denied, expired).",
            ["decision"],
            registry=r,
        )
        self.messages = Counter(
            "runwatch_messages_received", "People's messages delivered to runs, by mode.", ["mode"], registry=r
        )
        self.tool_duration = Histogram(
            "runwatch_tool_duration_seconds",
            "Tool call duration.",
            ["tool"],
            buckets=sorted({*_LATENCY, *_SECONDS}),
            registry=r,
        )

    def _bus_metrics(self, r: CollectorRegistry) -> None:
        """The bus: events published, and publish-to-send latency."""
        self.published = Counter("runwatch_bus_events_published", "Events published, by type.", ["type"], registry=r)
        #: The children counted for every token event, looked up once: ``labels()`` takes a lock
        #: and builds its key on every call, a cost per streamed token of every run.
        self._published_by_type: dict[str, Any] = {}
        self._output_tokens: dict[str, Any] = {}
        self.publish_to_send = LockFreeHistogram(
            "runwatch_bus_publish_to_send_seconds",
            "From an event's publish to the WebSocket send of the frame carrying it (oldest event of each frame).",
            buckets=_LATENCY,
            registry=r,
        )

    def auth_failure(self, reason: str) -> None:
        self.auth_failures.labels(reason).inc()

    def limited(self, kind: str) -> None:
        self.rate_limited.labels(kind).inc()

    def _preset(self) -> None:
        for reason in CLOSE_REASONS:
            self.ws_closed.labels(reason)
        for kind in LIMIT_KINDS:
            self.rate_limited.labels(kind)
        for reason in AUTH_FAILURE_REASONS:
            self.auth_failures.labels(reason)
        for transport, actions in SLOW_CONSUMER_TRANSPORTS.items():
            for action in actions:
                self.slow_consumers.labels(action, transport)
        for kind in CLIENT_MESSAGE_TYPES:
            self.ws_received.labels(kind)
        for agent in self._agents:
            self.runs_active.labels(agent)
            self.runs_queued.labels(agent)
            self.run_duration.labels(agent)
            self.queue_wait.labels(agent)
            for status in RUN_STATUSES:
                self.runs_finished.labels(agent, status)
        for model in self._models:
            self.cost.labels(model)
            self.ttft.labels(model)
            self.output_rate.labels(model)
            self.llm_duration.labels(model)
            for kind in TOKEN_TYPES:
                self.tokens.labels(model, kind)
            for error in LLM_ERROR_TYPES:
                self.llm_errors.labels(model, error)
        for tool in self._tools:
            self.tool_duration.labels(tool)
            for outcome in TOOL_OUTCOMES:
                self.tool_calls.labels(tool, outcome)
        for kind in EVENT_TYPES:
            self.published.labels(kind)
        for decision in APPROVAL_DECISIONS:
            self.approvals.labels(decision)
        for mode in MESSAGE_MODES:
            self.messages.labels(mode)

    def _agent(self, name: str) -> str:
        return name if name in self._agents else OTHER

    def _model(self, name: str) -> str:
        return name if name in self._models else OTHER

    def _tool(self, name: str) -> str:
        return name if name in self._tools else OTHER

    # -- the bus sink ---------------------------------------------------------------------------

    def accept(self, published: Published) -> None:
        kind = published.type
        counter = self._published_by_type.get(kind)
        if counter is None:
            counter = self._published_by_type[kind] = self.published.labels(kind)
        counter.inc()
        event = published.event
        if event is not None:
            handle = self._on.get(kind)
            if handle is not None:
                handle(event)

    def _on_token(self, event: Token) -> None:
        # Counted live, so token rates move while a long answer streams; topped up to the model's
        # own usage figure at step end.
        _, model, _ = self._runs.get(event.run_id, (OTHER, OTHER, True))
        output = self._output_tokens.get(model)
        if output is None:
            output = self._output_tokens[model] = self.tokens.labels(model, "output")
        output.inc(event.deltas)
        self._streamed[event.run_id] = self._streamed.get(event.run_id, 0) + event.deltas

    def _on_step_started(self, event: StepStarted) -> None:
        known = self._runs.get(event.run_id)
        if known is not None and known[1] == OTHER:
            self._runs[event.run_id] = (known[0], self._model(event.model), known[2])

    def _on_step_finished(self, event: StepFinished) -> None:
        _, model, _ = self._runs.get(event.run_id, (OTHER, OTHER, True))
        streamed = self._streamed.pop(event.run_id, 0)
        self.tokens.labels(model, "input").inc(event.usage.input_tokens)
        self.tokens.labels(model, "output").inc(max(0, event.usage.output_tokens - streamed))
        self.llm_duration.labels(model).observe(event.duration)
        if event.cost:
            self.cost.labels(model).inc(event.cost)
        if event.ttft is not None:
            self.ttft.labels(model).observe(event.ttft)
            streaming = event.duration - event.ttft
            if event.usage.output_tokens > 1 and streaming > 0:
                self.output_rate.labels(model).observe((event.usage.output_tokens - 1) / streaming)
        if event.error_type is not None:
            error = event.error_type if event.error_type in LLM_ERROR_TYPES else OTHER
            self.llm_errors.labels(model, error).inc()

    def _on_tool_finished(self, event: ToolFinished) -> None:
        tool = self._tool(event.tool)
        if event.denied:
            outcome = "denied"
        elif event.error is None:
            outcome = "ok"
        else:
            outcome = "cancelled" if event.error == "cancelled" else "error"
        self.tool_calls.labels(tool, outcome).inc()
        self.tool_duration.labels(tool).observe(event.duration)

    def _on_approval(self, event: ApprovalResolved) -> None:
        self.approvals.labels(event.decision).inc()

    def _on_message(self, event: MessageReceived) -> None:
        self.messages.labels(event.mode).inc()

    def _on_run_queued(self, event: RunQueued) -> None:
        agent = self._agent(event.agent)
        self._runs[event.run_id] = (agent, self._model(event.model), False)
        self.runs_queued.labels(agent).inc()

    def _on_run_started(self, event: RunStarted | RunResumed) -> None:
        # With many instances, a run may have been queued by another one (its agent then comes from
        # this event, its model from its steps).
        known = self._runs.get(event.run_id)
        agent = known[0] if known is not None else self._agent(event.agent)
        if known is not None and not known[2]:
            self.runs_queued.labels(agent).dec()
        if known is None or not known[2]:
            self.runs_active.labels(agent).inc()
        self._runs[event.run_id] = (agent, known[1] if known is not None else OTHER, True)
        if isinstance(event, RunStarted):
            self.queue_wait.labels(agent).observe(event.queue_wait)

    def _on_run_finished(self, event: RunFinished) -> None:
        agent, _, started = self._runs.pop(event.run_id, (OTHER, OTHER, None))
        self._streamed.pop(event.run_id, None)
        if started is not None:  # unknown here: queued and ended elsewhere, or a dead process's
            (self.runs_active if started else self.runs_queued).labels(agent).dec()
        self.runs_finished.labels(agent, event.status).inc()
        if started:
            self.run_duration.labels(agent).observe(event.totals.duration)

    async def ready(self) -> None:
        return None

    def released(self, run_id: str) -> None:
        """This instance no longer deals with ``run_id`` (queued for another, or handed over)."""
        known = self._runs.pop(run_id, None)
        self._streamed.pop(run_id, None)
        if known is not None:
            (self.runs_active if known[2] else self.runs_queued).labels(known[0]).dec()
