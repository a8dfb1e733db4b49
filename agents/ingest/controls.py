"""A run's controls on their way to its agent, and the long polls that wait for them.

A control is derived from the event that records it on the run — ``run.cancel_requested``,
``approval.resolved``, ``message.received`` — and its ``c`` is that event's ``seq``: stable across
restarts (a restarted server rebuilds the log from the stored events) and the same whichever
instance reads it. Delivery is at least once: a control stays pending until the agent says it has
taken it (``after`` ≥ its ``c``); until then every answer carries it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from runwatch.agents.events import ApprovalResolved, Event, MessageReceived, RunCancelRequested
from runwatch.agents.ingest.wire import AnyControl, ApprovalControl, CancelControl, MessageControl


def control_of(event: Event, c: int, calls: Mapping[str, str]) -> AnyControl | None:
    """The control ``event`` (published at ``c``) records, if it records one; ``calls``: each
    approval's call id."""
    if isinstance(event, RunCancelRequested):
        return CancelControl(c=c, by=event.by)
    if isinstance(event, ApprovalResolved):
        return ApprovalControl(
            c=c,
            by=event.by,
            approval_id=event.approval_id,
            call_id=calls.get(event.approval_id, ""),
            decision=event.decision,
            arguments=event.arguments,
            message=event.message,
        )
    if isinstance(event, MessageReceived):
        return MessageControl(c=c, by=event.by, text=event.text, mode=event.mode)
    return None


class ControlLog:
    """The controls of one run its agent has not taken yet, oldest first, and the long polls
    waiting on it. Taken ones are dropped (the store keeps their events)."""

    __slots__ = ("_pending", "_waiters", "acked")

    def __init__(self) -> None:
        self._pending: list[AnyControl] = []
        self._waiters: set[asyncio.Future[None]] = set()
        #: The highest ``c`` the agent said it took.
        self.acked = 0

    def add(self, control: AnyControl) -> None:
        if control.c > self.acked:
            self._pending.append(control)
            self.wake()

    def ack(self, after: int) -> None:
        """The agent took every control up to ``after``."""
        if after > self.acked:
            self.acked = after
            self._pending = [x for x in self._pending if x.c > after]

    def after(self, c: int) -> list[AnyControl]:
        """The pending controls past ``c``."""
        return [x for x in self._pending if x.c > c]

    def count(self, kind: type[AnyControl] | None = None) -> int:
        """How many are pending (of ``kind``, if given)."""
        return len(self._pending) if kind is None else sum(1 for x in self._pending if isinstance(x, kind))

    def cursor(self, after: int) -> int:
        """What an answer's ``cursor`` says to a client that asked past ``after``: the last pending
        control's ``c``, or ``after`` itself."""
        return max(after, self._pending[-1].c) if self._pending else after

    async def wait(self, timeout: float, ready: Callable[[], bool]) -> None:
        """Wait up to ``timeout`` seconds for ``ready()`` (checked at each ``add`` or ``wake``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not ready():
            left = deadline - loop.time()
            if left <= 0:
                return
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.add(future)
            try:
                await asyncio.wait((future,), timeout=left)
            finally:
                self._waiters.discard(future)

    @property
    def waiting(self) -> bool:
        """Some long poll waits on it."""
        return bool(self._waiters)

    def wake(self) -> None:
        """Let every long poll look again (a control came, the run ended, the server closes)."""
        for future in self._waiters:
            if not future.done():
                future.set_result(None)
        self._waiters.clear()
