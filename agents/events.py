"""The event model: everything an agent run says, as a tagged union of msgspec Structs.

Every event carries ``run_id``, ``seq`` (1, 2, 3 … per run, assigned by the bus at publish),
``ts`` (epoch seconds, taken at publish) and ``type`` (the tag). The JSON encoding of an event is
the wire format of the WebSocket, SSE and REST replay APIs alike, so it is made once per event.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec

from runwatch.agents.identity import Actor


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    #: Running, but stopped until a person decides on one or more tool calls (``approval.requested``).
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


FinalStatus = Literal["succeeded", "failed", "cancelled"]


class Event(msgspec.Struct, tag_field="type", kw_only=True):
    """Base of every event; ``seq`` and ``ts`` are left 0 by producers and set by the bus."""

    run_id: str
    seq: int = 0
    ts: float = 0.0


#: How producers (the runner, tool calls, approvals, tool contexts) publish an event: the bus's
#: ``publish`` or anything awaitable like it; what it returns is not theirs to use.
Emit = Callable[[Event], Awaitable[object]]


class Capabilities(msgspec.Struct, kw_only=True, frozen=True):
    """What an external run's agent takes back (``agents/ingest``): the dashboard offers only these."""

    cancel: bool = False
    approve: bool = False
    message: bool = False


class RunQueued(Event, tag="run.queued"):
    agent: str
    input: str
    model: str
    tenant: str = "default"
    offline: bool = False
    #: Who started the run (absent when authentication is off).
    by: Actor | None = None
    #: The conversation the run belongs to: its model sees the thread's earlier runs.
    thread: str = ""
    #: An agent running elsewhere executes the run and reports it (``POST /api/ingest/runs``).
    external: bool = False
    #: An external run's: the controls its agent takes (absent for runwatch's own runs: all of them).
    capabilities: Capabilities | msgspec.UnsetType = msgspec.UNSET


class RunCancelRequested(Event, tag="run.cancel_requested"):
    """Someone asked the run to stop; its ``run.finished`` (``cancelled``) follows."""

    by: Actor | None = None


class RunStarted(Event, tag="run.started"):
    agent: str
    queue_wait: float = 0.0
    #: The instance executing the run (``RUNWATCH_INSTANCE``; for an external run, the one that registered it).
    instance: str = ""
    #: An agent running elsewhere executes the run and reports it.
    external: bool = False


class RunResumed(Event, tag="run.resumed"):
    """The run goes on after its instance stopped (died, or handed it over at shutdown): ``instance``
    continues it from step ``step``, rebuilt from the stored events. Output of a step that had not
    finished before is superseded: that step runs again from its start."""

    instance: str
    step: int
    agent: str = ""


class StepStarted(Event, tag="step.started"):
    index: int
    model: str


class Token(Event, tag="token"):
    text: str
    #: How many streamed model deltas (≈ tokens) this event coalesces.
    deltas: int = 1


class ToolStarted(Event, tag="tool.started"):
    call_id: str
    tool: str
    arguments: Any


class ToolFinished(Event, tag="tool.finished"):
    call_id: str
    tool: str
    result: Any = None
    duration: float = 0.0
    error: str | None = None
    #: The call was never made: a person denied it (or its approval expired); ``result`` is the
    #: message the model got instead.
    denied: bool = False


class Usage(msgspec.Struct, kw_only=True):
    input_tokens: int = 0
    output_tokens: int = 0
    #: The model did not report its usage (the stream was cut — a cancel, an interrupt, a failure —
    #: or the endpoint sends none): ``output_tokens`` counts the text chunks that came (a token each
    #: in OpenAI's streams), and the input is unknown (0; dashboards show a dash).
    estimated: bool = False


class StepFinished(Event, tag="step.finished"):
    """A model call ended; its times are on the events' clock, so a watcher computes the same.

    ``ttft`` is the step's first token event's ``ts`` minus its ``step.started``'s (for a step that
    streamed no text: when its first tool-call delta came); ``duration`` is its end minus that start.
    """

    index: int
    finish_reason: str
    usage: Usage = msgspec.field(default_factory=Usage)
    ttft: float | None = None
    duration: float = 0.0
    #: The step streamed text (it has token events): its output tokens over its streaming time
    #: (``duration - ttft``) count in output tokens/s.
    streamed_text: bool = False
    #: When the model call failed: connection, timeout, rate_limited, client_error, server_error, other.
    error_type: str | None = None
    #: What the call cost in USD, from the price table (``RUNWATCH_PRICES``); null: the model is unpriced.
    cost: float | None = None
    #: The tool calls the step asked for (they run next, each with its ``tool.started``).
    tool_calls: int = 0


class ApprovalRequested(Event, tag="approval.requested"):
    """A tool call waits for a person's decision (``approve``/``deny``); the run is ``waiting``."""

    approval_id: str
    call_id: str
    tool: str
    arguments: Any
    reason: str
    #: When the approval expires as denied (epoch seconds; ``RUNWATCH_APPROVAL_TIMEOUT``).
    expires_at: float
    #: An external run's: the JSON Schema that edited arguments must satisfy (absent: any object).
    schema: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


ApprovalDecision = Literal["approved", "denied", "expired"]


class ApprovalResolved(Event, tag="approval.resolved"):
    """The first decision on an approval. ``arguments`` are those the tool is called with (maybe
    edited); a denial's ``message`` is what the model gets as the tool's result."""

    approval_id: str
    decision: ApprovalDecision
    by: Actor | None = None
    arguments: Any = None
    message: str | None = None
    #: Whether the run still waits for other approvals (then its status stays ``waiting``).
    waiting: bool = False


class MessageReceived(Event, tag="message.received"):
    """A person's message reached the run's conversation: the next step sees it after what the
    model said so far (``interrupt`` cut the answer being streamed; ``queue`` waited for the step)."""

    text: str
    by: Actor | None = None
    mode: Literal["interrupt", "queue"] = "queue"


class Status(Event, tag="status"):
    message: str
    call_id: str | None = None
    progress: float | None = None


# The runner adds to a run's Totals as it goes (a mutable struct); its run.finished carries them.
class Totals(msgspec.Struct, kw_only=True):
    """A run's totals: tokens, cost, steps, tool calls and duration, in its ``run.finished``."""

    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0
    steps: int = 0
    duration: float = 0.0
    #: USD of all its steps; null when its model is unpriced.
    cost: float | None = None

    def add_usage(self, usage: Usage, cost: float | None) -> None:
        """Count one step's tokens and what it cost (``None``: unpriced, the total stays as it is)."""
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        if cost is not None:
            self.cost = round((self.cost or 0.0) + cost, 8)


class RunFinished(Event, tag="run.finished"):
    status: FinalStatus
    error: str | None = None
    totals: Totals = msgspec.field(default_factory=Totals)


AnyEvent = (
    RunQueued
    | RunCancelRequested
    | RunStarted
    | RunResumed
    | StepStarted
    | Token
    | ToolStarted
    | ToolFinished
    | StepFinished
    | Status
    | ApprovalRequested
    | ApprovalResolved
    | MessageReceived
    | RunFinished
)


def tags(union: Any) -> tuple[str, ...]:
    """The ``type`` tags of a union of tagged structs, in the union's order: label sets and lists
    of message kinds are derived from the unions they describe, never restated."""
    return tuple(member.__struct_config__.tag for member in typing.get_args(union))


#: Every event's ``type``, in ``AnyEvent``'s order.
EVENT_TYPES = tags(AnyEvent)

#: The events that change a run's status: they go on the runs feed too.
#: ``step.finished`` too (small: no text, no tool results): it keeps a runs list's tokens, tool calls
#: and cost live.
LIFECYCLE_TYPES = frozenset(
    {
        "run.queued",
        "run.started",
        "run.finished",
        "approval.requested",
        "approval.resolved",
        "step.finished",
    }
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(data: bytes | str) -> AnyEvent:
    return _decoder.decode(data)


class Published:
    """An event as it travels after publish: its position and its JSON, encoded exactly once.

    ``event`` is the Struct when the event was published in this process, ``None`` when it was read
    back from the store; consumers that only forward events must use ``data``/``text``.
    """

    __slots__ = ("_text", "data", "event", "run_id", "seq", "type")

    def __init__(self, run_id: str, seq: int, type: str, data: bytes, event: Event | None = None) -> None:
        self.run_id = run_id
        self.seq = seq
        self.type = type
        self.data = data
        self.event = event
        self._text: str | None = None

    @property
    def text(self) -> str:
        """The JSON as ``str`` (WebSocket text frames want one), decoded once and shared."""
        if self._text is None:
            self._text = self.data.decode()
        return self._text

    def __repr__(self) -> str:
        return f"Published({self.run_id!r}, {self.seq}, {self.type!r})"
