"""A run as the instance executing it keeps it: its task, status, totals and human controls."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field

from runwatch.agents.events import RunStatus, Totals
from runwatch.agents.runs.inbox import Inbox


def new_run_id() -> str:
    """Time-ordered and unguessable: 11 hex digits of milliseconds, then 10 random ones."""
    return f"{int(time.time() * 1000):011x}{secrets.token_hex(5)}"


@dataclass
class RunHandle:
    id: str
    agent: str
    model: str
    task: asyncio.Task[None] | None = None
    status: RunStatus = RunStatus.QUEUED
    cancel_requested: bool = False
    #: Why the run was cancelled when it was not a user's request (shown as the run's error).
    cancel_reason: str | None = None
    queued_at: float = field(default_factory=time.monotonic)
    #: When it began executing here (``time.monotonic``; None: it has not).
    started_at: float | None = None
    #: Its totals so far (a continued run's start from those of its finished steps).
    totals: Totals = field(default_factory=Totals)
    #: Stopped to be continued elsewhere (a drain handing a resumable run over): no ``run.finished``.
    handed_over: bool = False
    thread: str = ""
    #: Its approvals and messages, from when it starts executing here.
    inbox: Inbox | None = None
    #: Whether it holds one of the instance's ``max_running`` slots now: a run waiting for people
    #: lends its slot out, and takes one again to go on (see ``Inbox``).
    holds_slot: bool = False
