"""What people do to external runs — cancel, decide an approval, send a message — as the run
service's ``Reported`` part: each is published on the run (``run.cancel_requested``,
``approval.resolved``, ``message.received``), which makes it a control its agent reads.

Each takes the run's lock, so it is ordered with the agent's posts and never lands after the run's
``run.finished``. A cancel or message to an agent that did not declare it takes them is refused
(``NotSupported``); a decision needs only the approval the agent asked for.
"""

from __future__ import annotations

import structlog

from runwatch.agents.bus import Bus
from runwatch.agents.errors import NotSupported, RateLimited, RunAlreadyFinished
from runwatch.agents.events import MessageReceived, RunCancelRequested, RunStatus
from runwatch.agents.identity import Actor
from runwatch.agents.ingest import limits
from runwatch.agents.ingest.runs import ExternalRuns
from runwatch.agents.ingest.wire import MessageControl
from runwatch.agents.runs.inbox import Decision, Steer
from runwatch.agents.store import Store

log = structlog.get_logger()


class PeopleInput:
    def __init__(self, *, runs: ExternalRuns, bus: Bus, store: Store) -> None:
        self._runs = runs
        self._bus = bus
        self._store = store

    async def cancel(self, run_id: str, by: Actor | None) -> RunStatus:
        """Ask the run's agent to stop (once: asking again changes nothing). Returns ``CANCELLED``
        if the run already ended so, else its status. Raises ``UnknownRun``,
        ``RunAlreadyFinished``, ``NotSupported``."""
        run = self._runs.live.get(run_id)
        if run is None:
            summary = await self._store.get_run(run_id)
            if summary is not None and summary.status is RunStatus.CANCELLED:
                return RunStatus.CANCELLED
            run = await self._runs.for_people(run_id)
        if not run.capabilities.cancel:
            raise NotSupported(f"run {run_id}'s agent ({run.agent}) does not take cancels (capabilities.cancel)")
        async with run.lock:
            if run.ended is not None:
                if run.ended is RunStatus.CANCELLED:
                    return RunStatus.CANCELLED
                raise RunAlreadyFinished(run_id, run.ended)
            if not run.cancel_requested:
                event = RunCancelRequested(run_id=run_id, by=by)
                run.apply(await self._bus.publish(event), event)
                log.info("run.cancel_requested", run_id=run_id, by=by.id if by else None)
            return run.status

    async def decide(self, run_id: str, approval_id: str, decision: Decision) -> Decision:
        """Decide an approval the run's agent asked for; the first decision wins (``Approvals``).
        Raises ``UnknownRun``, ``RunAlreadyFinished``, ``UnknownApproval``, ``AlreadyDecided``,
        ``InvalidArguments``."""
        run = await self._runs.for_people(run_id)
        async with run.lock:
            if run.ended is not None:
                raise RunAlreadyFinished(run_id, run.ended)
            run.approvals.check(run_id, approval_id, decision)
            event = run.approvals.resolve(run_id, approval_id, decision, "")
            run.apply(await self._bus.publish(event), event)
        log.info("approval.resolved", run_id=run_id, approval_id=approval_id, decision=event.decision)
        return decision

    async def message(self, run_id: str, steer: Steer) -> None:
        """Give the run's agent a person's message. Raises ``UnknownRun``,
        ``RunAlreadyFinished``, ``NotSupported``, ``RateLimited`` (``MAX_PENDING_CONTROLS``)."""
        run = await self._runs.for_people(run_id)
        if not run.capabilities.message:
            raise NotSupported(f"run {run_id}'s agent ({run.agent}) does not take messages (capabilities.message)")
        async with run.lock:
            if run.ended is not None:
                raise RunAlreadyFinished(run_id, run.ended)
            if run.controls.count(MessageControl) >= limits.MAX_PENDING_CONTROLS:
                raise RateLimited(
                    f"run {run_id}'s agent has not taken its last {limits.MAX_PENDING_CONTROLS} messages yet; "
                    "wait for it to take them",
                    retry_after=1.0,
                    kind="messages",
                )
            event = MessageReceived(run_id=run_id, text=steer.text, by=steer.by, mode=steer.mode)
            run.apply(await self._bus.publish(event), event)
