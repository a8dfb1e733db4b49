"""What people do to external runs — cancel, decide an approval, send a message — as the run
service's ``Reported`` part: each is published on the run (``run.cancel_requested``,
``approval.resolved``, ``message.received``), which makes it a control its agent reads.

Each takes the run's lock (and holds the run against other instances, its copy caught up), so it
is ordered with the agent's posts and never lands after the run's ``run.finished``; then the other
instances' long polls are told. A cancel or message to an agent that did not declare it takes them is refused
(``NotSupported``); a decision needs only the approval the agent asked for.
"""

from __future__ import annotations

import structlog

from runwatch.agents.errors import NotSupported, RateLimited, RunAlreadyFinished
from runwatch.agents.events import MessageReceived, RunCancelRequested, RunStatus
from runwatch.agents.identity import Actor
from runwatch.agents.ingest import limits
from runwatch.agents.ingest.runs import ExternalRuns
from runwatch.agents.ingest.wire import MessageControl
from runwatch.agents.runs.inbox import Decision, Steer

log = structlog.get_logger()


class PeopleInput:
    def __init__(self, runs: ExternalRuns) -> None:
        self._runs = runs

    async def cancel(self, run_id: str, by: Actor | None) -> RunStatus:
        """Ask the run's agent to stop (once: asking again changes nothing). Returns ``CANCELLED``
        if the run already ended so, else its status. Raises ``UnknownRun``,
        ``RunAlreadyFinished``, ``NotSupported``."""
        run = await self._runs.for_people(run_id)
        if run.ended is None and not run.capabilities.cancel:
            raise NotSupported(f"run {run_id}'s agent ({run.agent}) does not take cancels (capabilities.cancel)")
        async with self._runs.held(run):
            if run.ended is not None:
                if run.ended is RunStatus.CANCELLED:
                    return RunStatus.CANCELLED
                raise RunAlreadyFinished(run_id, run.ended)
            if run.cancel_requested:
                return run.status
            await self._runs.record(run, RunCancelRequested(run_id=run_id, by=by))
        await self._runs.sharing.changed(run_id)
        log.info("run.cancel_requested", run_id=run_id, by=by.id if by else None)
        return run.status

    async def decide(self, run_id: str, approval_id: str, decision: Decision) -> Decision:
        """Decide an approval the run's agent asked for; the first decision wins (``Approvals``).
        Raises ``UnknownRun``, ``RunAlreadyFinished``, ``UnknownApproval``, ``AlreadyDecided``,
        ``InvalidArguments``."""
        run = await self._runs.for_people(run_id)
        async with self._runs.held(run):
            self._runs.check_live(run)
            run.approvals.check(run_id, approval_id, decision)
            event = run.approvals.resolve(run_id, approval_id, decision, "")
            await self._runs.record(run, event)
        await self._runs.sharing.changed(run_id)
        log.info("approval.resolved", run_id=run_id, approval_id=approval_id, decision=event.decision)
        return decision

    async def message(self, run_id: str, steer: Steer) -> None:
        """Give the run's agent a person's message. Raises ``UnknownRun``,
        ``RunAlreadyFinished``, ``NotSupported``, ``RateLimited`` (``MAX_PENDING_CONTROLS``)."""
        run = await self._runs.for_people(run_id)
        if not run.capabilities.message:
            raise NotSupported(f"run {run_id}'s agent ({run.agent}) does not take messages (capabilities.message)")
        async with self._runs.held(run):
            self._runs.check_live(run)
            if run.controls.count(MessageControl) >= limits.MAX_PENDING_CONTROLS:
                raise RateLimited(
                    f"run {run_id}'s agent has not taken its last {limits.MAX_PENDING_CONTROLS} messages yet; "
                    "wait for it to take them",
                    retry_after=1.0,
                    kind="messages",
                )
            await self._runs.record(run, MessageReceived(run_id=run_id, text=steer.text, by=steer.by, mode=steer.mode))
        await self._runs.sharing.changed(run_id)
