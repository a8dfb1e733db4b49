"""One live external run as this process keeps it, and how it is rebuilt from its stored events.

Everything here is derived from the run's events, so a restarted process (or another instance)
rebuilds the same state, and a copy caught up with the events past its ``seq`` equals one rebuilt.
``last_n`` is the count of the run's events of the types an agent sends — each accepted agent
event is stored as exactly one event, and runwatch writes none of those types into a live external
run — so a batch retried after a crash skips exactly what was stored before it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from runwatch.agents.events import (
    ApprovalRequested,
    ApprovalResolved,
    Capabilities,
    Event,
    Published,
    RunCancelRequested,
    RunFinished,
    RunQueued,
    RunStarted,
    RunStatus,
    StepFinished,
    StepStarted,
    Token,
    ToolFinished,
    Totals,
    decode,
)
from runwatch.agents.ingest.approvals import Approvals
from runwatch.agents.ingest.controls import ControlLog, control_of
from runwatch.agents.ingest.wire import AGENT_TYPES
from runwatch.agents.store.buffer import ANSWER_MAX


@dataclass(eq=False)
class ExternalRun:
    id: str
    tenant: str
    agent: str
    #: The principal that registered it (only it, or an admin, may post and poll); None with
    #: authentication off.
    registrant: str | None
    capabilities: Capabilities
    lease_seconds: float
    #: When its ``run.started`` was published (epoch seconds): its duration counts from there.
    started_at: float = field(default_factory=time.time)
    #: The last ``n`` accepted.
    last_n: int = 0
    #: The position of the last event taken into this state.
    seq: int = 0
    #: When this copy was last used (``time.monotonic``): see ``ExternalRuns.evict_idle``.
    used: float = field(default_factory=time.monotonic)
    #: When its agent was last told to ``Leases.seen`` from here (``time.monotonic``; 0: never).
    seen_at: float = 0.0
    cancel_requested: bool = False
    #: Its ``run.finished``'s status, once published.
    ended: RunStatus | None = None
    approvals: Approvals = field(default_factory=Approvals)
    controls: ControlLog = field(default_factory=ControlLog)
    totals: Totals = field(default_factory=Totals)
    #: The text of its last step so far (its final answer, once it succeeds), bounded.
    answer: list[str] = field(default_factory=list)
    answer_chars: int = 0
    #: Posts, people's input, catching up and the lease's end of this run, one at a time here
    #: (``Sharing.exclusive`` makes it one at a time across instances).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def status(self) -> RunStatus:
        if self.ended is not None:
            return self.ended
        return RunStatus.WAITING if self.approvals.open else RunStatus.RUNNING

    def final_totals(self) -> Totals:
        """Its totals so far, with its duration until now."""
        return msgspec.structs.replace(self.totals, duration=round(max(0.0, time.time() - self.started_at), 4))

    def apply(self, published: Published, event: Event) -> None:
        """Take ``event`` (published at ``published.seq``, or read back) into the run's state."""
        self.seq = published.seq
        if published.type in AGENT_TYPES:
            self.last_n += 1
        match event:
            case Token(text=text):
                if self.answer_chars < ANSWER_MAX:
                    self.answer.append(text)
                    self.answer_chars += len(text)
            case StepStarted():
                self.answer.clear()
                self.answer_chars = 0
            case StepFinished(usage=usage, cost=cost):
                self.totals.add_usage(usage, cost)
                self.totals.steps += 1
            case ToolFinished():
                self.totals.tool_calls += 1
            case ApprovalRequested():
                self.approvals.opened(event)
            case ApprovalResolved():
                self.approvals.resolved(event)
            case RunFinished(status=status):
                self.ended = RunStatus(status)
            case RunStarted(ts=ts):
                self.started_at = ts or self.started_at
            case RunCancelRequested():
                self.cancel_requested = True
        control = control_of(event, published.seq, self.approvals.calls)
        if control is not None:
            self.controls.add(control)

    @property
    def answer_text(self) -> str:
        return "".join(self.answer)[:ANSWER_MAX]


def rebuild(events: Iterable[Published], lease_seconds: float) -> ExternalRun | None:
    """The run as its stored events (all of them, in order) leave it; None if they do not begin
    with an external run's ``run.queued``."""
    run: ExternalRun | None = None
    for p in events:
        event = decode(p.data)
        if run is None:
            if not isinstance(event, RunQueued) or not event.external:
                return None
            capabilities = event.capabilities if isinstance(event.capabilities, Capabilities) else Capabilities()
            run = ExternalRun(
                id=p.run_id,
                tenant=event.tenant,
                agent=event.agent,
                registrant=event.by.id if event.by is not None else None,
                capabilities=capabilities,
                lease_seconds=lease_seconds,
                started_at=event.ts,
            )
        run.apply(p, event)
    return run
