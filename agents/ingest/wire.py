"""What an agent elsewhere sends and gets: its registration, its numbered events, the controls
that come back and the answers, as msgspec Structs (docs/ingest.md describes each).

The events an agent may send are runwatch's own (``runwatch.agents.events``), derived here rather
than restated: the same fields, less those runwatch sets itself (``run_id``, ``seq``, ``ts``, an
approval's ``expires_at``), plus the client's counter ``n``. Unknown fields are refused.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, Literal

import msgspec

from runwatch.agents.events import (
    EVENT_TYPES,
    ApprovalDecision,
    ApprovalRequested,
    Capabilities,
    Event,
    RunFinished,
    RunStatus,
    Status,
    StepFinished,
    StepStarted,
    Token,
    ToolFinished,
    ToolStarted,
)
from runwatch.agents.identity import Actor
from runwatch.agents.ingest import limits
from runwatch.agents.runs.inbox import Mode

#: The events an agent may send, in the order docs/ingest.md lists them.
AGENT_EVENTS: tuple[type[Event], ...] = (
    StepStarted,
    Token,
    StepFinished,
    ToolStarted,
    Status,
    ToolFinished,
    ApprovalRequested,
    RunFinished,
)
AGENT_TYPES: frozenset[str] = frozenset(e.__struct_config__.tag for e in AGENT_EVENTS)
#: The events only runwatch writes (``run.cancel_requested``, ``approval.resolved``,
#: ``message.received``, ``run.queued``, ``run.started``, ``run.resumed``): an agent's are refused.
RESERVED_TYPES: frozenset[str] = frozenset(EVENT_TYPES) - AGENT_TYPES

#: The client's per-run counter: 1, 2, 3 … (a JSON number every client holds exactly).
N = Annotated[int, msgspec.Meta(ge=1, le=2**53 - 1)]

#: Fields runwatch sets, never the agent: every event's position and time, an approval's expiry.
_SET_HERE = frozenset({"run_id", "seq", "ts", "expires_at"})
#: Fields an agent may leave out though runwatch's own events always have them: (type, field) →
#: its default. An approval without an id gets one; a ``run.finished`` without totals gets the
#: run's (what its ``step.finished`` and ``tool.finished`` events added up to).
_OPTIONAL: dict[tuple[str, str], Any] = {("approval.requested", "approval_id"): "", ("run.finished", "totals"): None}


def _incoming(event: type[Event]) -> type[msgspec.Struct]:
    """The struct an agent sends for ``event``: its fields but those runwatch sets, and ``n``."""
    tag = event.__struct_config__.tag
    fields: list[tuple[Any, ...]] = [("n", N)]
    for f in msgspec.structs.fields(event):
        if f.name in _SET_HERE:
            continue
        if (tag, f.name) in _OPTIONAL:
            default = _OPTIONAL[tag, f.name]
            fields.append((f.name, f.type if default is not None else f.type | None, default))
        elif f.required:
            fields.append((f.name, f.type))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, f.type, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, f.type, f.default))
    return msgspec.defstruct(
        f"Incoming{event.__name__}",
        fields,
        tag=tag,
        tag_field="type",
        kw_only=True,
        forbid_unknown_fields=True,
        module=__name__,
    )


#: Each agent event's incoming struct, by type.
INCOMING: dict[str, type[msgspec.Struct]] = {e.__struct_config__.tag: _incoming(e) for e in AGENT_EVENTS}
#: The event each incoming type becomes.
EVENT_OF: dict[str, type[Event]] = {e.__struct_config__.tag: e for e in AGENT_EVENTS}
Incoming = typing.Union[tuple(INCOMING.values())]  # type: ignore[valid-type]  # noqa: UP007


class Batch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /api/ingest/runs/{id}/events``: events numbered by ``n``; none is a heartbeat."""

    events: list[Incoming] = msgspec.field(default_factory=list)  # type: ignore[valid-type]
    #: The last control (``c``) the agent has taken: controls up to it are not pending any more.
    after: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None


class RunPart(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One run's part of ``POST /api/ingest/events``: its batch, as the per-run route takes it. Its
    events are kept raw here, then decoded and checked as the per-run route's (``batch``), so a
    bad one refuses that run's part alone."""

    run_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    events: list[msgspec.Raw] = msgspec.field(default_factory=list)
    after: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None


class TypedPart(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``RunPart`` with its events decoded: how a request whose every event is well formed is read
    (in one pass; one that is not is read again as ``ManyParts``)."""

    run_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    events: list[Incoming] = msgspec.field(default_factory=list)  # type: ignore[valid-type]
    after: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None


class TypedMany(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    runs: Annotated[list[TypedPart], msgspec.Meta(max_length=limits.MAX_BATCH_RUNS)]


class ManyParts(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /api/ingest/events``: batches of many runs in one request, each run once."""

    runs: Annotated[list[RunPart], msgspec.Meta(max_length=limits.MAX_BATCH_RUNS)]


class Registration(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /api/ingest/runs``: a run an agent elsewhere executes, once per ``external_id``."""

    #: The agent's own id of the run: registering it again answers the same run.
    external_id: Annotated[str, msgspec.Meta(min_length=1, max_length=limits.MAX_EXTERNAL_ID_CHARS)]
    #: The agent's name (not one of this server's own agents).
    agent: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")]
    #: What it was asked (``RUNWATCH_MAX_INPUT_BYTES`` at most).
    input: str
    #: A thread of the tenant's (an earlier run's ``thread``) the run continues; omitted: its own.
    thread: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    model: Annotated[str, msgspec.Meta(max_length=limits.MAX_NAME_CHARS)] = ""
    #: The controls the agent takes back (the dashboard offers only these).
    capabilities: Capabilities = msgspec.field(default_factory=Capabilities)
    #: Seconds the run may go without a post before it ends ``agent_lost``.
    lease_seconds: Annotated[float, msgspec.Meta(ge=limits.MIN_LEASE, le=limits.MAX_LEASE)] | None = None


# -- what comes back ------------------------------------------------------------------------------


class Control(msgspec.Struct, tag_field="type", kw_only=True):
    """Something people asked of the run; ``c`` is its stable id and the cursor's position (the
    ``seq`` of the event that records it on the run: ``run.cancel_requested``,
    ``approval.resolved``, ``message.received``)."""

    c: int
    by: Actor | None = None


class CancelControl(Control, tag="cancel"):
    """Stop the run and end it with ``run.finished`` ``cancelled``."""

    #: ``now``: stop as soon as you can (the only mode today).
    mode: Literal["now"] = "now"


class ApprovalControl(Control, tag="approval"):
    """The first decision on an approval the agent asked for."""

    approval_id: str
    call_id: str
    decision: ApprovalDecision
    #: What to call the tool with (a person may have edited them; for a denial, the original ones).
    arguments: Any = None
    #: A denial's reason: what the model should get instead of the tool's result.
    message: str | None = None


class MessageControl(Control, tag="message"):
    """A person's message for the run's conversation (``interrupt``: cut the current answer)."""

    text: str
    mode: Mode = "queue"


AnyControl = CancelControl | ApprovalControl | MessageControl


class Registered(msgspec.Struct, kw_only=True):
    run_id: str
    lease_seconds: float
    #: The last ``n`` accepted: post from ``last_n + 1`` on.
    last_n: int
    status: RunStatus


class Accepted(msgspec.Struct, kw_only=True):
    run_id: str
    #: Events of this batch stored now, and those skipped (their ``n`` was accepted before).
    accepted: int
    skipped: int
    last_n: int
    #: The run's pending controls (after the agent's ``after``), oldest first.
    controls: list[AnyControl]
    #: The last control's ``c`` (or ``after``): pass it as ``after`` once they are taken.
    cursor: int
    status: RunStatus


class ControlsPage(msgspec.Struct, kw_only=True):
    run_id: str
    controls: list[AnyControl]
    cursor: int
    #: The run's status: once it is finished, no control comes any more.
    status: RunStatus


class Refused(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Why one run's part of ``POST /api/ingest/events`` was refused: what the per-run route
    would have answered (nothing of that part applied)."""

    status_code: int
    code: str
    detail: str
    #: A ``gap``'s next ``n``.
    expected_n: int | None = None
    #: A ``rate_limited`` or ``unavailable`` part's: seconds to wait before sending it again.
    retry_after: float | None = None


class RunResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One run's outcome: ``accepted`` (as the per-run route answers) or ``error``."""

    run_id: str
    accepted: Accepted | None = None
    error: Refused | None = None


class Results(msgspec.Struct, kw_only=True):
    """``POST /api/ingest/events``' answer: one result per run, in the order sent."""

    results: list[RunResult]
