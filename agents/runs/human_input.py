"""What people do to runs executing on this instance: decide approvals, send messages.

Each run executing here has an ``Inbox`` (``agents/runs/inbox.py``, opened by the ``Executor``)
that its tools and model loop wait on; ``HumanInput`` finds a run's inbox and hands it the
person's input, or says why it cannot (the run is unknown, ended, or not executing yet).
"""

from __future__ import annotations

from collections.abc import Mapping

from runwatch.agents.errors import NotStarted, RunAlreadyFinished, UnknownApproval, UnknownRun
from runwatch.agents.runs.handle import RunHandle
from runwatch.agents.runs.inbox import Decision, Steer
from runwatch.agents.store import Store


class HumanInput:
    def __init__(self, *, runs: Mapping[str, RunHandle], store: Store) -> None:
        """``runs``: the runs this instance keeps, by id (the ``Executor``'s, read only);
        ``store``: where a run not kept here is looked up."""
        self._runs = runs
        self._store = store

    async def decide(self, run_id: str, approval_id: str, decision: Decision) -> Decision:
        """Decide an open approval of a run executing here; the first decision wins.

        Raises ``UnknownRun``, ``RunAlreadyFinished``, ``UnknownApproval``, ``AlreadyDecided``,
        ``InvalidArguments``.
        """
        return self.decide_in(run_id, await self.executing(run_id), approval_id, decision)

    async def message(self, run_id: str, steer: Steer) -> None:
        """Give a run executing here a person's message (see ``Inbox.post``).

        Raises ``UnknownRun``, ``RunAlreadyFinished``, ``NotStarted``, ``RateLimited``.
        """
        self.post_to(run_id, await self.executing(run_id), steer)

    @staticmethod
    def decide_in(run_id: str, handle: RunHandle | None, approval_id: str, decision: Decision) -> Decision:
        """Hand ``decision`` to the inbox of ``handle`` (the run ``run_id``, if it executes here)."""
        if handle is None or handle.inbox is None:
            raise UnknownApproval.of(run_id, approval_id)
        return handle.inbox.decide(approval_id, decision)

    @staticmethod
    def post_to(run_id: str, handle: RunHandle | None, steer: Steer) -> None:
        """Hand ``steer`` to the inbox of ``handle`` (the run ``run_id``, if it executes here)."""
        if handle is None or handle.inbox is None:
            raise NotStarted.of(run_id)
        handle.inbox.post(steer)

    async def executing(self, run_id: str) -> RunHandle | None:
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
