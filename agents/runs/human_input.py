"""What people do to runs executing on this instance: decide approvals, send messages.

A mixin of ``Supervisor``: each executing run gets an ``Inbox`` (``agents/runs/inbox.py``) that
the run's tools and model loop wait on; these methods find it and hand it the person's input.
"""

from __future__ import annotations

import asyncio
from typing import Any

from runwatch.agents.errors import NotStarted, RunAlreadyFinished, UnknownApproval, UnknownRun
from runwatch.agents.events import RunStatus
from runwatch.agents.runs.handle import RunHandle
from runwatch.agents.runs.inbox import Decision, Inbox, Steer


class HumanInput:
    _runs: dict[str, Any]
    _store: Any
    _bus: Any
    _approval_timeout: float
    _slots: asyncio.Semaphore

    def _inbox(self, handle: RunHandle) -> Inbox:
        """The run's approvals and messages, now that it executes here."""
        inbox = Inbox(handle.id, self._bus.publish, approval_timeout=self._approval_timeout)
        inbox.bind(asyncio.current_task())

        def waiting(now: bool) -> None:
            if not handle.status.finished:
                handle.status = RunStatus.WAITING if now else RunStatus.RUNNING

        def lend() -> None:  # nothing runs while people decide: another run may use the slot
            if handle.holds_slot:
                handle.holds_slot = False
                self._slots.release()

        async def go_on() -> None:  # (Inbox awaits it under a lock: never twice at once)
            if not handle.holds_slot:
                await self._slots.acquire()
                handle.holds_slot = True

        inbox.on_waiting = waiting
        inbox.lend = lend
        inbox.go_on = go_on
        handle.inbox = inbox
        return inbox

    # -- people in the loop ---------------------------------------------------------------------

    async def decide(self, run_id: str, approval_id: str, decision: Decision) -> Decision:
        """Decide an open approval of a run executing here; the first decision wins.

        Raises ``UnknownRun``, ``RunAlreadyFinished``, ``UnknownApproval``, ``AlreadyDecided``,
        ``InvalidArguments``.
        """
        handle = await self._executing(run_id)
        if handle is None or handle.inbox is None:
            raise UnknownApproval.of(run_id, approval_id)
        return handle.inbox.decide(approval_id, decision)

    async def message(self, run_id: str, steer: Steer) -> None:
        """Give a run executing here a person's message (see ``Inbox.post``).

        Raises ``UnknownRun``, ``RunAlreadyFinished``, ``NotStarted``, ``RateLimited``.
        """
        handle = await self._executing(run_id)
        if handle is None or handle.inbox is None:
            raise NotStarted.of(run_id)
        handle.inbox.post(steer)

    async def _executing(self, run_id: str) -> RunHandle | None:
        """The run's handle if it executes here; None if it is live but not (yet) here. Raises
        ``UnknownRun`` or ``RunAlreadyFinished``."""
        handle = self._runs.get(run_id)
        if handle is not None:
            if handle.status.finished:  # (its end may not be stored yet)
                raise RunAlreadyFinished(run_id, handle.status)
            return handle
        summary = await self._store.get_run(run_id)
        if summary is None:
            raise UnknownRun(f"no run {run_id!r}")
        if summary.status.finished:
            raise RunAlreadyFinished(run_id, summary.status)
        return None
